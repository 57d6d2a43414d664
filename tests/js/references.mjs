// The independent reference tokenizers the parity test and the HF benchmark compare dsv3 with,
// behind one interface, and the corpus-file chunking that bench/bench_tokenizer.cc uses.
//   lenml: @lenml/tokenizers (a JS port of transformers.js)
//   hf:    tokenizers (Hugging Face's Node binding of the Rust `tokenizers` crate)
// Both are installed by scripts/test.sh into <source>/.cache/node (env DSV3_NODE_DIR overrides).
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const nodeDir = process.env.DSV3_NODE_DIR ?? path.join(here, "..", "..", ".cache", "node");
const require = createRequire(path.join(nodeDir, "package.json"));
const readJson = (p) => JSON.parse(fs.readFileSync(p, "utf8"));

// Returns { name, version, encode(text) -> Promise<ids>, decode(ids) -> Promise<string> }, both
// without special tokens added (what `dsv3 tokenize` prints).
export function loadReference(kind, tokDir) {
  const version = (pkg) => readJson(path.join(nodeDir, "node_modules", pkg, "package.json")).version;
  if (kind === "lenml") {
    const { TokenizerLoader } = require("@lenml/tokenizers");
    const tok = TokenizerLoader.fromPreTrained({
      tokenizerJSON: readJson(path.join(tokDir, "tokenizer.json")),
      tokenizerConfig: readJson(path.join(tokDir, "tokenizer_config.json")),
    });
    return {
      name: "@lenml/tokenizers",
      version: version("@lenml/tokenizers"),
      encode: async (text) => tok.encode(text, { add_special_tokens: false }),
      decode: async (ids) => tok.decode(ids),
    };
  }
  if (kind === "hf") {
    // The binding runs each encode on one libuv worker; the Rust side would only use rayon for
    // batches, but pin it to one thread anyway so timings are single-threaded.
    process.env.RAYON_NUM_THREADS ??= "1";
    process.env.TOKENIZERS_PARALLELISM ??= "false";
    const { Tokenizer } = require("tokenizers");
    const tok = Tokenizer.fromFile(path.join(tokDir, "tokenizer.json"));
    return {
      name: "tokenizers (HF Rust, node binding)",
      version: version("tokenizers"),
      raw: tok,
      encode: async (text) => (await tok.encode(text, null, { addSpecialTokens: false })).getIds(),
      decode: (ids) => tok.decode(ids, false),
    };
  }
  throw new Error(`unknown reference tokenizer '${kind}' (lenml or hf)`);
}

// A corpus file cut into pieces of ~2 KB at line ends, exactly as bench_tokenizer.cc's chunks_of
// does: in bytes, at the first '\n' at or after start + 2000. Cuts fall on '\n', so each piece is
// whole UTF-8.
export function fileChunks(file) {
  const buf = fs.readFileSync(file);
  const chunks = [];
  for (let start = 0; start < buf.length;) {
    let end = start + 2000 >= buf.length ? -1 : buf.indexOf(0x0a, start + 2000);
    end = end < 0 ? buf.length : end + 1;
    chunks.push(buf.toString("utf8", start, end));
    start = end;
  }
  return { chunks, bytes: buf.length };
}
