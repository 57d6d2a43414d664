// `dsv3 tokenizer train` against Hugging Face's Rust `tokenizers` (Node binding, installed by
// scripts/test.sh into .cache/node):
//  1. encode: train on 3/4 of a mixed corpus (tests/js/corpus.mjs), then encode the held-out
//     quarter, plus texts full of added tokens, with `dsv3 tokenize --jsonl` and with HF loading
//     the same tokenizer.json: every id must agree, and HF must decode the ids back to the text.
//  2. train: HF's BpeTrainer (what Tokenizer.train runs) on the same words must choose the same
//     merges in the same order. HF's train_from_files pre-tokenizes each line on its own while dsv3
//     pre-tokenizes whole files, so this part trains on the corpus with every line's leading
//     whitespace removed and blank lines dropped: then a line break is never followed by
//     whitespace and both cut the text into the same words.
//   node train_parity.mjs DSV3_BIN [MB]
// Env: DSV3_NODE_DIR (node_modules parent, default <source>/.cache/node).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { collectCorpus } from "./corpus.mjs";
import { loadReference } from "./references.mjs";

const [bin, mbArg] = process.argv.slice(2);
if (!bin) {
  console.error("usage: node train_parity.mjs DSV3_BIN [MB]");
  process.exit(2);
}
const vocab = 4000;
const mb = Number(mbArg ?? 3.2);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dsv3-train-parity-"));
process.on("exit", () => fs.rmSync(tmp, { recursive: true, force: true }));
const fail = (msg) => {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
};
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function dsv3(args, input) {
  const t0 = Date.now();
  const r = spawnSync(bin, args, { input, encoding: "utf8", maxBuffer: 1 << 30, stdio: ["pipe", "pipe", "inherit"] });
  if (r.status !== 0) fail(`dsv3 ${args.join(" ")} exited with ${r.status ?? r.signal}`);
  return { out: r.stdout, seconds: (Date.now() - t0) / 1000 };
}

const { chunks, bytes, bySource } = collectCorpus(mb / 6.4);
console.log(`corpus: ${chunks.length} chunks, ${(bytes / 1e6).toFixed(2)} MB ${JSON.stringify(bySource)}`);
if (bytes < 0.5 * mb * 1e6) fail(`only ${bytes} bytes of corpus text found; see tests/js/corpus.mjs`);
const train = chunks.filter((_, i) => i % 4 !== 3);
const heldOut = chunks.filter((_, i) => i % 4 === 3);

// 1. Encode parity.
const trainFile = path.join(tmp, "train.txt");
fs.writeFileSync(trainFile, train.join(""));
const tokDir = path.join(tmp, "tok");
const trained = dsv3(["-q", "tokenizer", "train", "--vocab", String(vocab), "--out", tokDir, trainFile]);
console.log(`dsv3 tokenizer train: ${(fs.statSync(trainFile).size / 1e6).toFixed(2)} MB in ${trained.seconds} s`);
const hf = loadReference("hf", tokDir);
console.log(`reference: ${hf.name} ${hf.version}, vocab ${hf.raw.getVocabSize(true)}`);
if (hf.raw.getVocabSize(true) !== vocab) fail(`HF sees ${hf.raw.getVocabSize(true)} ids, not ${vocab}`);

const added = JSON.parse(fs.readFileSync(path.join(tokDir, "tokenizer.json"), "utf8")).added_tokens.map((t) => t.content);
const special = [
  "<｜begin▁of▁sentence｜>You are helpful.<｜User｜>What is 2+2?<｜Assistant｜>4<｜end▁of▁sentence｜>",
  "<｜User｜>call it<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{}\n```" +
    "<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>42" +
    "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>",
  "<｜fim▁begin｜>def f(x):\n    <｜fim▁hole｜>\n    return y<｜fim▁end｜><|EOT|>",
  "partial <｜User and <｜Assistant｜ and <｜▁pad▁｜><｜▁pad▁｜> and <|EOT| end",
  added.join(""),
  added.join(" x "),
];
// Held-out chunks with added tokens spliced in at varied places.
for (let i = 0; i < heldOut.length; i += 7) {
  const c = heldOut[i], k = Math.floor(c.length / 2);
  special.push(c.slice(0, k) + added[i % added.length] + c.slice(k) + added[(i + 3) % added.length]);
}
const texts = [...heldOut, ...special];
const ours = dsv3(["tokenize", "-m", tokDir, "--jsonl"], texts.map((t) => JSON.stringify(t)).join("\n") + "\n")
  .out.split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
if (ours.length !== texts.length) fail(`dsv3 printed ${ours.length} lines for ${texts.length} texts`);
let mismatches = 0, undecoded = 0, tokens = 0, heldBytes = 0;
for (let i = 0; i < texts.length; ++i) {
  const want = await hf.encode(texts[i]);
  tokens += want.length;
  heldBytes += Buffer.byteLength(texts[i]);
  if (!same(want, ours[i]) && ++mismatches <= 5) {
    let k = 0;
    while (k < want.length && want[k] === ours[i][k]) ++k;
    console.log(`mismatch in text ${i} at token ${k}: hf ${JSON.stringify(want.slice(k, k + 8))} dsv3 ` +
                `${JSON.stringify(ours[i].slice(k, k + 8))} near ${JSON.stringify(texts[i].slice(0, 60))}`);
  }
  if ((await hf.decode(ours[i])) !== texts[i]) ++undecoded;
}
console.log(`encode: ${texts.length} texts (${(heldBytes / 1e3).toFixed(0)} KB held out, ${special.length} with ` +
            `added tokens), ${tokens} tokens: ${mismatches} mismatches, ${undecoded} not decoded back by HF`);
if (mismatches || undecoded) fail("dsv3 and Hugging Face disagree");

// 2. Trainer parity on line-independent text.
const lines = train.join("").split("\n").map((l) => l.replace(/^[\s\u0085]+/u, "")).filter((l) => l.length);
const lineFile = path.join(tmp, "lines.txt");
fs.writeFileSync(lineFile, lines.join("\n") + "\n");
const lineTok = path.join(tmp, "tok-lines");
dsv3(["-q", "tokenizer", "train", "--vocab", String(vocab), "--out", lineTok, lineFile]);
const ourMerges = JSON.parse(fs.readFileSync(path.join(lineTok, "tokenizer.json"), "utf8")).model.merges;
const hfTok = loadReference("hf", lineTok).raw;
const t0 = Date.now();
hfTok.train([lineFile]);  // the model's default BpeTrainer: vocab 30000, min_frequency 0
const hfFile = path.join(tmp, "hf.json");
hfTok.save(hfFile, false);
const hfMerges = JSON.parse(fs.readFileSync(hfFile, "utf8")).model.merges.map((m) => (Array.isArray(m) ? m.join(" ") : m));
console.log(`train: dsv3 ${ourMerges.length} merges; HF trained ${hfMerges.length} merges in ${(Date.now() - t0) / 1000} s`);
if (hfMerges.length < ourMerges.length) fail("HF's trainer stopped before dsv3's");
const diff = ourMerges.findIndex((m, i) => m !== hfMerges[i]);
if (diff >= 0) fail(`merge ${diff} differs: dsv3 ${JSON.stringify(ourMerges[diff])}, HF ${JSON.stringify(hfMerges[diff])}`);
console.log(`train: all ${ourMerges.length} merges equal HF's, in order`);
console.log("PASS");
