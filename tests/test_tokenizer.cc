// Tokenizer against Hugging Face `tokenizers` outputs (tests/data/ref.json, made by
// transformers): golden ids and decodes, chat-template texts, streaming and bad inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/error.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

const Tokenizer& tok() {
  static std::unique_ptr<Tokenizer> t = Tokenizer::load(DSV3_TOKENIZER_DIR);
  return *t;
}

const json& ref() {
  static json j = [] {
    std::ifstream f(std::string(DSV3_TEST_DATA) + "/ref.json");
    return json::parse(f);
  }();
  return j;
}

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

TEST(Tokenizer, Shape) {
  // Spec section 8: 128000 base tokens + 815 added ones at 128000.. (ids 0-2 are both).
  EXPECT_EQ(tok().size(), 128815u);
  EXPECT_EQ(tok().bos_id(), 0);
  EXPECT_EQ(tok().eos_id(), 1);
  EXPECT_EQ(tok().bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tok().eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_EQ(tok().token_id("<｜User｜>"), 128803);
  EXPECT_EQ(tok().token_id("<｜Assistant｜>"), 128804);
  EXPECT_EQ(tok().token_id("Ġworld"), 2058);
  EXPECT_EQ(tok().token_id("no such token here"), std::nullopt);
  EXPECT_TRUE(tok().is_special(0));
  EXPECT_FALSE(tok().is_special(128803));  // <｜User｜> is an added token but not special
  EXPECT_FALSE(tok().is_special(2058));
  EXPECT_EQ(tok().token_bytes(2058), " world");
  EXPECT_EQ(tok().token_bytes(128803), "<｜User｜>");
  EXPECT_EQ(tok().token_bytes(129000), "");  // padding id of the model vocab
}

TEST(Tokenizer, GoldenHuggingFace) {
  const json& cases = ref()["tokenize"];
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    std::string text = c["text"];
    EXPECT_EQ(tok().encode(text), ids_of(c["ids"])) << text;
    EXPECT_EQ(tok().decode(ids_of(c["ids"])), c["decoded"].get<std::string>()) << text;
  }
}

TEST(Tokenizer, GoldenChatTexts) {
  const json& cases = ref()["chat"];
  ASSERT_GE(cases.size(), 4u);
  for (const auto& c : cases) {
    std::string text = c["text"];
    EXPECT_EQ(tok().encode(text), ids_of(c["ids"])) << text;
    EXPECT_EQ(tok().decode(ids_of(c["ids"])), text);
    // Random-model continuations decoded by transformers with skip_special_tokens: they include
    // padding ids without a token and byte tokens that do not form UTF-8 (U+FFFD).
    if (c.contains("greedy_text")) {
      EXPECT_EQ(tok().decode(ids_of(c["greedy"]), true), c["greedy_text"].get<std::string>());
    }
  }
}

TEST(Tokenizer, ConcurrentEncode) {
  // encode() is const and shared by the server's threads; the word cache must stay coherent.
  const json& cases = ref()["tokenize"];
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int rep = 0; rep < 50; ++rep)
        for (const auto& c : cases)
          if (tok().encode(c["text"].get<std::string>()) != ids_of(c["ids"])) ++failures[t];
    });
  }
  for (auto& th : threads) th.join();
  for (int f : failures) EXPECT_EQ(f, 0);
}

TEST(Tokenizer, NoSpecialMatching) {
  std::string text = "<｜User｜>hi<｜end▁of▁sentence｜>";
  std::vector<int32_t> ids = tok().encode(text, false);
  for (int32_t id : ids) EXPECT_LT(id, 128000) << "added token matched with match_special=false";
  EXPECT_GT(ids.size(), 4u);
  EXPECT_EQ(tok().decode(ids), text);
}

TEST(Tokenizer, RoundTrip) {
  std::vector<std::string> texts = {
      "", " ", "\n", "a", "  leading and trailing  ", "\r\n\r\n\t \u00a0x",
      "Mixed 中文 and 日本語のテキスト and 한국어 텍스트 and العربية and עברית",
      "numbers 0 00 000 0000 ٠١٢٣ ①②③ Ⅻ", "emoji 👨‍👩‍👧‍👦 🇺🇳 🏳️‍🌈", "combining e\u0301 a\u0308",
      "code: if (x<=y) { return a->b[i] << 2; } // done", "\u0085next line\u2028sep\u3000ideo",
      std::string("nul\0byte", 8), "<｜User｜>inside<｜Assistant｜>"};
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {  // random code points from several planes
    std::string s;
    for (int k = 0; k < 30; ++k) {
      uint32_t cp = rng() % 4 == 0 ? rng() % 0x80 : rng() % 0x30000;
      if (cp >= 0xD800 && cp < 0xE000) cp = 'x';
      if (cp < 0x80) {
        s += char(cp);
      } else if (cp < 0x800) {
        s += {char(0xC0 | cp >> 6), char(0x80 | (cp & 63))};
      } else if (cp < 0x10000) {
        s += {char(0xE0 | cp >> 12), char(0x80 | ((cp >> 6) & 63)), char(0x80 | (cp & 63))};
      } else {
        s += {char(0xF0 | cp >> 18), char(0x80 | ((cp >> 12) & 63)), char(0x80 | ((cp >> 6) & 63)),
              char(0x80 | (cp & 63))};
      }
    }
    texts.push_back(s);
  }
  for (const auto& t : texts) EXPECT_EQ(tok().decode(tok().encode(t)), t);
}

TEST(Tokenizer, InvalidUtf8) {
  for (std::string bad : {"\xff", "ok\xc3", "\xed\xa0\x80", "\xc0\xaf", "a\xf4\x90\x80\x80"}) {
    EXPECT_THROW(tok().encode(bad), Error) << bad;
    std::string clean = utf8_sanitize(bad);
    EXPECT_EQ(utf8_first_invalid(clean), std::string::npos);
    EXPECT_EQ(tok().decode(tok().encode(clean)), clean);
  }
  // Maximal subparts, as Rust's from_utf8_lossy: "\xf0\x9f\x98" is one U+FFFD, "\xc0\xaf" two.
  EXPECT_EQ(utf8_sanitize("a\xf0\x9f\x98" "b"), "a\uFFFDb");
  EXPECT_EQ(utf8_sanitize("\xc0\xaf"), "\uFFFD\uFFFD");
  EXPECT_EQ(utf8_sanitize("\xed\xa0\x80"), "\uFFFD\uFFFD\uFFFD");
}

TEST(Tokenizer, DecodeIds) {
  EXPECT_EQ(tok().decode(std::vector<int32_t>{0, 19923, 1}, true), "Hello");
  EXPECT_EQ(tok().decode(std::vector<int32_t>{19923, 129279}), "Hello");  // padded vocab: nothing
  EXPECT_THROW(tok().decode(std::vector<int32_t>{129280}), Error);
  EXPECT_THROW(tok().decode(std::vector<int32_t>{-1}), Error);
}

TEST(StreamDecoder, EmitsCharactersAsSoonAsComplete) {
  // "😀" is ids [28927, 225] in the golden cases: the first token holds 3 of its 4 bytes.
  StreamDecoder sd(tok());
  EXPECT_EQ(sd.push(28927), "");
  EXPECT_EQ(sd.push(225), "😀");
  EXPECT_EQ(sd.push(19923), "Hello");
  EXPECT_EQ(sd.push(1), "");  // EOS is special: skipped
  EXPECT_EQ(sd.push(28927), "");
  EXPECT_EQ(sd.flush(), "\uFFFD");  // cut inside a character
  EXPECT_EQ(sd.flush(), "");
}

TEST(StreamDecoder, MatchesDecodeOnRandomIds) {
  std::mt19937 rng(1);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> ids;
    for (int i = 0; i < 40; ++i) ids.push_back(rng() % 3 == 0 ? rng() % 512 : rng() % Tokenizer::kDefaultVocabLimit);
    for (bool skip : {false, true}) {
      StreamDecoder sd(tok(), skip);
      std::string streamed;
      for (size_t i = 0; i < ids.size(); ++i) {
        std::string piece = sd.push(ids[i]);
        EXPECT_EQ(utf8_first_invalid(piece), std::string::npos);
        streamed += piece;
        // Everything decodable so far has been emitted: at most 3 bytes of a character wait.
        std::string all = tok().decode(std::span(ids.data(), i + 1), skip);
        EXPECT_LE(all.size(), streamed.size() + 3);
      }
      streamed += sd.flush();
      EXPECT_EQ(streamed, tok().decode(ids, skip));
    }
  }
}

TEST(PreTokenizer, OnigWhitespaceClass) {
  // U+180E is \s for PCRE2 but not for Oniguruma/Rust (not White_Space since Unicode 6.3).
  Regex re(translate_onig_pattern("\\s+"), "test");
  size_t b, e;
  EXPECT_FALSE(re.find("\u180e", 0, b, e));
  EXPECT_TRUE(re.find("x\u0085", 0, b, e));
  EXPECT_EQ(b, 1u);
  EXPECT_THROW(translate_onig_pattern("[\\S]"), Error);
}

// Writes a small tokenizer.json variant and expects load() to fail naming `expect`.
void expect_load_error(const std::string& name, const std::string& content, const std::string& expect) {
  fs::path dir = fs::temp_directory_path() / ("dsv3_tok_" + name);
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << content;
  try {
    Tokenizer::load(dir.string());
    ADD_FAILURE() << name << ": loaded";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(expect), std::string::npos) << name << ": " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << name << ": not one line: " << msg;
  }
  fs::remove_all(dir);
}

json tiny_tokenizer() {
  json vocab = json::object();
  // Every byte in GPT-2's byte-to-unicode alphabet, then two merges.
  int id = 0;
  for (uint32_t b = 0, next = 256; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    uint32_t cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s += char(cp);
    } else {
      s += {char(0xC0 | cp >> 6), char(0x80 | (cp & 63))};
    }
    vocab[s] = id++;
  }
  vocab["ab"] = id++;
  vocab["abc"] = id++;
  return {{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"a b", json::array({"ab", "c"})}}}},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"added_tokens", json::array({{{"id", 300}, {"content", "<x>"}, {"special", true}}})}};
}

TEST(TokenizerLoad, TinyFileAndBothMergeForms) {
  fs::path dir = fs::temp_directory_path() / "dsv3_tok_tiny";
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tiny_tokenizer().dump();
  auto t = Tokenizer::load((dir / "tokenizer.json").string());
  EXPECT_EQ(t->encode("abc<x>ab"), (std::vector<int32_t>{257, 300, 256}));
  EXPECT_EQ(t->decode(t->encode("abc<x>ab"), true), "abcab");
  EXPECT_EQ(t->size(), 259u);
  // ignore_merges (HF BPE option): a word that is a whole vocab entry is taken as is.
  json im = tiny_tokenizer();
  im["model"]["vocab"]["xyz"] = 258;
  im["model"]["ignore_merges"] = true;
  std::ofstream(dir / "tokenizer.json") << im.dump();
  auto t2 = Tokenizer::load(dir.string());
  EXPECT_EQ(t2->encode("xyz"), (std::vector<int32_t>{258}));
  EXPECT_EQ(t->encode("xyz").size(), 3u);
  fs::remove_all(dir);
}

TEST(TokenizerLoad, RejectsMalformed) {
  expect_load_error("notjson", "{\"model\": ", "not valid JSON");
  expect_load_error("array", "[1,2]", "top level");
  json t = tiny_tokenizer();
  auto with = [&](auto edit) {
    json c = t;
    edit(c);
    return c.dump();
  };
  expect_load_error("wordpiece", with([](json& c) { c["model"]["type"] = "WordPiece"; }), "model.type");
  expect_load_error("novocab", with([](json& c) { c["model"].erase("vocab"); }), "model.vocab");
  expect_load_error("merge3", with([](json& c) { c["model"]["merges"][0] = "a b c"; }), "model.merges[0]");
  expect_load_error("mergeoov", with([](json& c) { c["model"]["merges"][1] = "x y"; }), "not in the vocab");
  expect_load_error("mergenum", with([](json& c) { c["model"]["merges"][1] = 5; }), "model.merges[1]");
  expect_load_error("negid", with([](json& c) { c["model"]["vocab"]["zz"] = -3; }), "out of range");
  expect_load_error("dupid", with([](json& c) { c["model"]["vocab"]["zz"] = 5; }), "used twice");
  expect_load_error("nobyte", with([](json& c) { c["model"]["vocab"].erase("a"); }), "no token for byte 0x61");
  expect_load_error("normalizer", with([](json& c) { c["normalizer"] = {{"type", "NFC"}}; }), "normalizer");
  expect_load_error("decoder", with([](json& c) { c["decoder"] = {{"type", "WordPiece"}}; }), "decoder");
  expect_load_error("metaspace", with([](json& c) { c["pre_tokenizer"] = {{"type", "Metaspace"}}; }), "Metaspace");
  expect_load_error("badregex", with([](json& c) {
    c["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({
        {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}},
        {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  }), "pretokenizers[0].pattern");
  expect_load_error("removed", with([](json& c) {
    c["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", json::array({
        {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Removed"}},
        {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  }), "Isolated");
  expect_load_error("lstrip", with([](json& c) { c["added_tokens"][0]["lstrip"] = true; }), "lstrip");
  expect_load_error("addednoid", with([](json& c) { c["added_tokens"][0].erase("id"); }), "added_tokens[0]");
  expect_load_error("missing", "", "not valid JSON");
  EXPECT_THROW(Tokenizer::load("/nonexistent/dir"), Error);
  EXPECT_FALSE(Tokenizer::available("/nonexistent/dir"));
  EXPECT_TRUE(Tokenizer::available(DSV3_TOKENIZER_DIR));
}

}  // namespace
}  // namespace dsv3
