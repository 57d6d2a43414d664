// Builds a mixed text corpus from files every Debian build machine has (or that scripts/setup.sh
// installs): fortunes (English, Russian, Chinese), man pages in many languages, C/C++ headers.
// Used by the JS parity test and the tokenizer benchmark.
//   node corpus.mjs OUT.txt [MB]   writes the corpus as plain text
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";

function* walk(dir, depth = 0) {
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && depth < 8) yield* walk(p, depth + 1);
    else if (e.isFile()) yield p;
  }
}

const decoder = new TextDecoder("utf-8");  // invalid bytes -> U+FFFD on both sides alike
function readText(p) {
  let buf = fs.readFileSync(p);
  if (p.endsWith(".gz")) buf = zlib.gunzipSync(buf);
  return decoder.decode(buf);
}

// Each source: files in a fixed order, read until its byte budget is used.
function sources() {
  const fortunes = "/usr/share/games/fortunes";
  const isFortune = (p) => !p.endsWith(".dat") && !p.endsWith(".u8");
  const man = (lang) => [...walk(path.join("/usr/share/man", lang))].filter((p) => p.endsWith(".gz"));
  return [
    { name: "fortunes-en", files: [...walk(fortunes)].filter((p) => isFortune(p) && path.dirname(p) === fortunes &&
        !/chinese|song100|tang300/.test(p)), budget: 1.6e6 },
    { name: "fortunes-ru", files: [...walk(path.join(fortunes, "ru"))].filter(isFortune), budget: 0.8e6 },
    { name: "fortunes-zh", files: ["chinese", "song100", "tang300"].map((f) => path.join(fortunes, f)), budget: 0.8e6 },
    { name: "man-en", files: ["man1", "man3", "man5", "man7"].flatMap(man), budget: 1.0e6 },
    { name: "man-i18n", files: ["ja", "zh_CN", "zh_TW", "ko", "ru", "uk", "de", "fr", "es", "pl", "pt_BR", "tr", "sv"]
        .flatMap(man), budget: 1.2e6 },
    { name: "c-headers", files: [...walk("/usr/include")].filter((p) => /\.(h|hpp|hh)$/.test(p) || !path.extname(p)),
      budget: 1.0e6 },
  ];
}

// Returns { chunks: [string], bytes, bySource }: texts of up to ~2 KB cut at line ends, so that
// runs of newlines and indentation stay inside chunks. `scale` multiplies every budget; when some
// sources are missing (e.g. a machine without man pages) the others are read further until the
// total reaches the scaled sum of the budgets, as far as they go.
export function collectCorpus(scale = 1) {
  const target = sources().reduce((a, s) => a + s.budget, 0) * scale;
  let result = collectOnce(scale);
  for (let k = 0; k < 4 && result.bytes < 0.99 * target; ++k) {
    const more = collectOnce(scale * Math.min(8, target / result.bytes) * (1 + k));
    if (more.bytes <= result.bytes) break;
    result = more;
    if (result.bytes >= target) break;
  }
  return result;
}

function collectOnce(scale) {
  const chunks = [];
  const bySource = {};
  let bytes = 0;
  for (const src of sources()) {
    let used = 0;
    for (const f of src.files) {
      if (used >= src.budget * scale) break;
      let text;
      try {
        text = readText(f);
      } catch {
        continue;
      }
      let cur = "";
      for (const line of text.split(/(?<=\n)/)) {
        if (used >= src.budget * scale) break;
        cur += line;
        used += Buffer.byteLength(line);
        if (cur.length >= 2000) {
          chunks.push(cur);
          cur = "";
        }
      }
      if (cur) chunks.push(cur);
    }
    bySource[src.name] = used;
    bytes += used;
  }
  return { chunks, bytes, bySource };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out = process.argv[2];
  const mb = Number(process.argv[3] ?? 6.4);
  const { chunks, bytes, bySource } = collectCorpus(mb / 6.4);
  fs.writeFileSync(out, chunks.join(""));
  console.error(`corpus: ${(bytes / 1e6).toFixed(2)} MB ${JSON.stringify(bySource)}`);
}
