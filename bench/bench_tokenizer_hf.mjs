// Hugging Face `tokenizers` (the Rust crate, through its official Node binding) on the same corpus
// file and the same ~2 KB chunks as bench_tokenizer.cc, one thread, add_special_tokens=false.
// Prints lines in bench_tokenizer's format so bench/tokenizer_vs_hf.sh parses both alike.
//   RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false UV_THREADPOOL_SIZE=1 \
//     node bench/bench_tokenizer_hf.mjs TOKENIZER_DIR CORPUS.txt [PASSES]
// Each `encode` call runs on one libuv worker while the main thread waits, so exactly one thread
// tokenizes at a time; process CPU time (all threads) is therefore comparable with dsv3's
// thread CPU time.
import { fileChunks, loadReference } from "../tests/js/references.mjs";

const [tokDir, corpusFile, passesArg] = process.argv.slice(2);
if (!tokDir || !corpusFile) {
  console.error("usage: node bench_tokenizer_hf.mjs TOKENIZER_DIR CORPUS.txt [PASSES]");
  process.exit(2);
}
const passes = Number(passesArg ?? 3);
const { chunks, bytes } = fileChunks(corpusFile);
const mb = bytes / 1e6;

const now = () => Number(process.hrtime.bigint()) / 1e9;
const cpu = () => ((u) => (u.user + u.system) / 1e6)(process.cpuUsage());

let ref, bestLoad = Infinity, bestLoadCpu = Infinity;
for (let i = 0; i < 3; ++i) {
  const t0 = now(), c0 = cpu();
  ref = loadReference("hf", tokDir);
  bestLoadCpu = Math.min(bestLoadCpu, cpu() - c0);
  bestLoad = Math.min(bestLoad, now() - t0);
}
const tok = ref.raw;
console.log(`tokenizers ${ref.version} (node ${process.version})`);
console.log(`load tokenizer.json: ${(bestLoadCpu * 1e3).toFixed(0)} ms cpu, ${(bestLoad * 1e3).toFixed(0)} ms wall ` +
            `(best of 3), ${tok.getVocabSize(true)} tokens`);

const opts = { addSpecialTokens: false };
let tokens = 0;
for (let pass = 0; pass < passes; ++pass) {
  tokens = 0;
  const t0 = now(), c0 = cpu();
  for (const c of chunks) tokens += (await tok.encode(c, null, opts)).getIds().length;
  const s = cpu() - c0, wall = now() - t0;
  console.log(`encode pass ${pass} (${pass === 0 ? "empty cache" : "warm cache"}): ${mb.toFixed(2)} MB in ` +
              `${s.toFixed(3)} s cpu (${wall.toFixed(3)} s wall) = ${(mb / s).toFixed(1)} MB/s, ` +
              `${(tokens / s / 1e6).toFixed(2)} M tokens/s`);
}
console.log(`${tokens} tokens, ${(bytes / tokens).toFixed(2)} bytes/token`);

// What the binding itself costs per call (promise + worker hop + JsEncoding), measured on empty
// input: information for reading the numbers above, not subtracted from them.
const n = 20000, t0 = now();
for (let i = 0; i < n; ++i) (await tok.encode("", null, opts)).getIds();
const perCall = (now() - t0) / n;
console.log(`binding overhead: ${(perCall * 1e6).toFixed(1)} us per encode call, ` +
            `${(perCall * chunks.length).toFixed(3)} s per pass of ${chunks.length} chunks`);
