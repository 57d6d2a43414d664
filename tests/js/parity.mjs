// Encodes a >= 5 MB mixed corpus with an independent reference tokenizer and with
// `dsv3 tokenize --jsonl`, and counts chunks whose ids differ. References (tests/js/references.mjs):
// lenml = @lenml/tokenizers (a port of transformers.js, the default), hf = Hugging Face's Rust
// `tokenizers` through its Node binding.
//   node parity.mjs [--ref lenml|hf] [--corpus FILE] DSV3_BIN TOKENIZER_DIR [MB]
// --corpus: encode FILE cut as bench/bench_tokenizer.cc cuts it instead of building the corpus.
// Env: DSV3_NODE_DIR (node_modules parent, default <source>/.cache/node), DSV3_TEST_DATA.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { collectCorpus } from "./corpus.mjs";
import { fileChunks, loadReference } from "./references.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args.splice(i, 2)[1];
};
const refKind = option("--ref", "lenml");
const corpusFile = option("--corpus", null);
const [bin, tokDir, mbArg] = args;
if (!bin || !tokDir) {
  console.error("usage: node parity.mjs [--ref lenml|hf] [--corpus FILE] DSV3_BIN TOKENIZER_DIR [MB]");
  process.exit(2);
}
const minBytes = 5e6;
const mb = Number(mbArg ?? 6.4);
const ref = loadReference(refKind, tokDir);
console.log(`reference: ${ref.name} ${ref.version}`);
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

// How the reference itself does on the transformers golden cases (information only: the C++
// tests check dsv3 against these directly).
const testData = process.env.DSV3_TEST_DATA ?? path.join(here, "..", "data");
const golden = (({ tokenize, chat }) => [...tokenize, ...chat])(readJson(path.join(testData, "ref.json")));
const refVsGolden = [];
for (const c of golden) if (!same(await ref.encode(c.text), c.ids)) refVsGolden.push(c);
console.log(`reference vs transformers golden cases: ${golden.length - refVsGolden.length}/${golden.length} agree`);
for (const c of refVsGolden) console.log(`  reference differs on ${JSON.stringify(c.text.slice(0, 80))}`);

const { chunks, bytes, bySource } = corpusFile ? fileChunks(corpusFile) : collectCorpus(mb / 6.4);
console.log(`corpus: ${chunks.length} chunks, ${(bytes / 1e6).toFixed(2)} MB ${JSON.stringify(bySource ?? corpusFile)}`);
if (bytes < minBytes) {
  console.error(`FAIL: only ${bytes} bytes of corpus text found (need ${minBytes}); see tests/js/corpus.mjs`);
  process.exit(1);
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dsv3-parity-"));
const inFile = path.join(tmp, "in.jsonl");
const outFile = path.join(tmp, "out.jsonl");
fs.writeFileSync(inFile, chunks.map((c) => JSON.stringify(c)).join("\n") + "\n");
const t1 = Date.now();
const run = spawnSync(bin, ["tokenize", "-m", tokDir, "--jsonl"], {
  stdio: [fs.openSync(inFile, "r"), fs.openSync(outFile, "w"), "inherit"],
});
const t2 = Date.now();
if (run.status !== 0) {
  console.error(`FAIL: dsv3 tokenize exited with ${run.status ?? run.signal}`);
  process.exit(1);
}
const ours = fs.readFileSync(outFile, "utf8").split("\n").filter((l) => l.length);
fs.rmSync(tmp, { recursive: true, force: true });
if (ours.length !== chunks.length) {
  console.error(`FAIL: dsv3 printed ${ours.length} lines for ${chunks.length} inputs`);
  process.exit(1);
}

let mismatches = 0, tokens = 0;
for (let i = 0; i < chunks.length; ++i) {
  const want = await ref.encode(chunks[i]);
  const got = JSON.parse(ours[i]);
  tokens += want.length;
  if (same(want, got)) continue;
  if (++mismatches <= 5) {
    let k = 0;
    while (k < want.length && want[k] === got[k]) ++k;
    const ctx = await ref.decode(want.slice(Math.max(0, k - 3), k + 3));
    console.log(`mismatch in chunk ${i} at token ${k}: ${refKind} ${JSON.stringify(want.slice(k, k + 4))} ` +
                `dsv3 ${JSON.stringify(got.slice(k, k + 4))} near ${JSON.stringify(ctx)}`);
  }
}
const t3 = Date.now();
console.log(`${chunks.length} chunks, ${tokens} tokens: ${mismatches} mismatches ` +
            `(dsv3 ${((t2 - t1) / 1000).toFixed(1)} s, ${refKind} ${((t3 - t2) / 1000).toFixed(1)} s)`);
process.exit(mismatches === 0 ? 0 : 1);
