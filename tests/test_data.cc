// Token data (src/data): the writer and `dsv3 data` against the reader (TokenStream/TokenData):
// round trips, the one-document/one-sequence edge, corrupt files, the validation split, bad id
// inputs and text mode against the real tokenizer's encode.
#include <gtest/gtest.h>

#include "testing.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "data/corpus.h"
#include "data/token_data.h"
#include "data/token_writer.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;
using Docs = std::vector<std::vector<int32_t>>;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("dsv3_test_data_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string ids_jsonl(const Docs& docs) {
  std::string s;
  for (const auto& d : docs) s += nlohmann::json(d).dump() + "\n";
  return s;
}

CorpusSummary build_ids(const std::string& ids_file, const std::string& out, double val_fraction = 0.05,
                        uint64_t seed = 0, int64_t vocab = 0, bool force = false) {
  CorpusOptions o;
  o.ids_file = ids_file;
  o.out = out;
  o.val_fraction = val_fraction;
  o.seed = seed;
  o.vocab_size = vocab;
  o.force = force;
  o.progress = 0;
  return build_token_data(o);
}

std::vector<int32_t> all_tokens(const TokenStream& s) { return {s.tokens().begin(), s.tokens().end()}; }

// Documents expected in train and val for this split, concatenated in order.
std::pair<std::vector<int32_t>, std::vector<int32_t>> expected_split(const Docs& docs, uint64_t seed, double f) {
  std::pair<std::vector<int32_t>, std::vector<int32_t>> tv;
  for (size_t i = 0; i < docs.size(); ++i) {
    auto& dst = is_val_document(seed, static_cast<int64_t>(i), f) ? tv.second : tv.first;
    dst.insert(dst.end(), docs[i].begin(), docs[i].end());
  }
  return tv;
}

Docs random_docs(int n, int max_len, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  Docs docs(static_cast<size_t>(n));
  for (auto& d : docs) {
    d.resize(1 + rng() % static_cast<uint32_t>(max_len));
    for (auto& t : d) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  }
  return docs;
}

// Expects `f` to throw a dsv3::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << *parts.begin();
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\nmissing: " << p;
  }
}

TEST(TokenData, RoundTripIdsThroughFiles) {
  TempDir t;
  const Docs docs = random_docs(300, 40, 5000, 1);
  write_text(t / "ids.jsonl", ids_jsonl(docs));
  const CorpusSummary s = build_ids(t / "ids.jsonl", t / "out", 0.2, 7);
  int32_t mx = 0;
  for (const auto& d : docs)
    for (int32_t x : d) mx = std::max(mx, x);
  EXPECT_EQ(s.data.vocab_size, mx + 1);  // no --vocab-size: max id + 1

  const TokenData td = TokenData::open(t / "out", 129280);
  EXPECT_EQ(td.vocab_size, mx + 1);
  const auto [train, val] = expected_split(docs, 7, 0.2);
  EXPECT_EQ(all_tokens(*td.train), train);
  EXPECT_EQ(all_tokens(*td.val), val);
  EXPECT_EQ(td.train->docs() + td.val->docs(), 300);
  EXPECT_GT(td.val->docs(), 30);  // ~60 expected
  EXPECT_LT(td.val->docs(), 100);
  EXPECT_EQ(td.train->docs(), s.data.train_docs);
  EXPECT_EQ(td.val->size(), s.data.val_tokens);

  // Sequences: consecutive chunks, the partial tail dropped, ids as int32.
  const int64_t L = 37;
  ASSERT_EQ(td.train->sequences(L), static_cast<int64_t>(train.size()) / L);
  std::vector<int32_t> seq(L);
  const int64_t last = td.train->sequences(L) - 1;
  td.train->sequence(last, L, seq.data());
  EXPECT_TRUE(std::equal(seq.begin(), seq.end(), train.begin() + last * L));
  EXPECT_THROW(td.train->sequence(last + 1, L, seq.data()), Error);
  EXPECT_THROW(td.train->sequence(-1, L, seq.data()), Error);
  EXPECT_EQ(td.train->sequences(0), 0);

  // meta.json holds what the header promised.
  const auto meta = nlohmann::json::parse(std::ifstream(t / "out/meta.json"));
  EXPECT_EQ(meta["format"], "dsv3-tokens-v1");
  EXPECT_EQ(meta["train_tokens"], static_cast<int64_t>(train.size()));
  EXPECT_EQ(meta["val_docs"], td.val->docs());
  EXPECT_TRUE(meta["tokenizer"].is_null());
  EXPECT_EQ(meta["source"]["mode"], "ids");
  // No temporary file is left behind.
  for (const auto& e : fs::directory_iterator(t / "out")) EXPECT_EQ(e.path().extension() != ".partial", true) << e.path();
}

TEST(TokenData, OneDocumentOfSeqLenIsOneSequence) {
  // A lone document is training data even where its hash says val.
  uint64_t seed = 0;
  while (!is_val_document(seed, 0, 0.5)) ++seed;
  const int64_t T = 16;
  std::vector<int32_t> doc(T);
  for (int64_t i = 0; i < T; ++i) doc[static_cast<size_t>(i)] = static_cast<int32_t>(100 + 7 * i);
  TempDir t;
  write_text(t / "one.jsonl", "\n" + ids_jsonl({doc}) + "  \n");  // blank lines are not documents
  const CorpusSummary s = build_ids(t / "one.jsonl", t / "out", 0.5, seed);
  EXPECT_EQ(s.data.train_docs, 1);
  EXPECT_EQ(s.data.val_docs, 0);
  const TokenData td = TokenData::open(t / "out", 0);
  ASSERT_EQ(td.train->sequences(T), 1);
  std::vector<int32_t> seq(T);
  td.train->sequence(0, T, seq.data());
  EXPECT_EQ(seq, doc);
  EXPECT_EQ(td.train->sequences(T + 1), 0);
  EXPECT_EQ(td.val->size(), 0);  // val.bin exists with 0 tokens
  EXPECT_EQ(td.val->docs(), 0);
  EXPECT_EQ(td.val->sequences(T), 0);
  EXPECT_TRUE(fs::exists(t / "out/val.bin"));
}

TEST(TokenData, ValSplitIsDeterministicAndFractionZeroKeepsAll) {
  TempDir t;
  const Docs docs = random_docs(2000, 5, 100, 2);
  write_text(t / "ids.jsonl", ids_jsonl(docs));
  auto bytes = [](const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  build_ids(t / "ids.jsonl", t / "a", 0.1, 3);
  build_ids(t / "ids.jsonl", t / "b", 0.1, 3);
  build_ids(t / "ids.jsonl", t / "c", 0.1, 4);
  EXPECT_EQ(bytes(t / "a/train.bin"), bytes(t / "b/train.bin"));
  EXPECT_EQ(bytes(t / "a/val.bin"), bytes(t / "b/val.bin"));
  EXPECT_NE(bytes(t / "a/val.bin"), bytes(t / "c/val.bin"));  // the seed matters
  const TokenData a = TokenData::open(t / "a", 0);
  EXPECT_GT(a.val->docs(), 150);  // 200 expected
  EXPECT_LT(a.val->docs(), 250);
  // The default fraction is 0.05; 0 puts everything in train.
  EXPECT_EQ(CorpusOptions().val_fraction, 0.05);
  const CorpusSummary z = build_ids(t / "ids.jsonl", t / "z", 0.0, 3);
  EXPECT_EQ(z.data.val_docs, 0);
  EXPECT_EQ(z.data.train_docs, 2000);
  const TokenData zd = TokenData::open(t / "z", 0);
  EXPECT_EQ(zd.val->size(), 0);
  EXPECT_EQ(all_tokens(*zd.train), expected_split(docs, 0, 0.0).first);
  for (int64_t i = 0; i < 1000; ++i) EXPECT_FALSE(is_val_document(i, i, 0.0));
  EXPECT_THROW(build_ids(t / "ids.jsonl", t / "bad", 1.0), Error);
  EXPECT_THROW(build_ids(t / "ids.jsonl", t / "bad", -0.1), Error);
}

// ---- corrupt data directories ----

class CorruptData : public ::testing::Test {
 protected:
  void SetUp() override {
    write_text(t_ / "ids.jsonl", ids_jsonl({{1, 2, 3, 4}, {5, 6, 7}, {8, 9}}));
    build_ids(t_ / "ids.jsonl", t_ / "d", 0.0, 0, 50);
    train_ = t_ / "d/train.bin";
  }
  void patch(const std::string& path, size_t offset, const void* p, size_t n) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(offset));
    f.write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  }
  void open_fails(std::initializer_list<std::string> parts, int64_t model_vocab = 0) {
    expect_error([&] { TokenData::open(t_ / "d", model_vocab); }, parts);
  }
  TempDir t_;
  std::string train_;
};

TEST_F(CorruptData, ValidLoads) {
  const TokenData td = TokenData::open(t_ / "d", 50);
  EXPECT_EQ(td.vocab_size, 50);
  EXPECT_EQ(td.train->size(), 9);
  EXPECT_EQ(td.train->docs(), 3);
}

TEST_F(CorruptData, BadMagic) {
  patch(train_, 0, "DSV3TOK9", 8);
  open_fails({train_, "bad magic"});
}

TEST_F(CorruptData, Truncated) {
  fs::resize_file(train_, 32 + 4 * 9 - 4);
  open_fails({train_, "truncated", "9 tokens"});
  fs::resize_file(train_, 20);
  open_fails({train_, "truncated", "header"});
  fs::resize_file(train_, 0);
  open_fails({train_, "truncated"});
}

TEST_F(CorruptData, CountMismatch) {
  const uint64_t fewer = 8;
  patch(train_, 8, &fewer, 8);
  open_fails({train_, "count mismatch", "8 tokens"});
  const uint64_t nine = 9, docs = 10;
  patch(train_, 8, &nine, 8);
  patch(train_, 16, &docs, 8);
  open_fails({train_, "document count"});
}

TEST_F(CorruptData, IdNotBelowVocab) {
  const uint32_t big = 50;
  patch(train_, 32 + 4 * 5, &big, 4);
  open_fails({train_, "token 5", "id 50", "vocabulary size 50"});
  EXPECT_NO_THROW({ TokenStream s(train_, 51); });
  EXPECT_NO_THROW({ TokenStream s(train_); });  // no vocabulary: not checked
}

TEST_F(CorruptData, MetaProblems) {
  open_fails({"meta.json", "exceeds", "40"}, 40);  // model too small for the data
  const std::string meta = t_ / "d/meta.json";
  auto j = nlohmann::json::parse(std::ifstream(meta));
  j["train_tokens"] = 8;
  write_text(meta, j.dump());
  open_fails({"train_tokens", "train.bin holds 9"});
  write_text(meta, "{not json");
  open_fails({meta, "not valid JSON"});
  fs::remove(meta);
  open_fails({t_ / "d", "no meta.json"});
  fs::remove(t_ / "d/val.bin");
  write_text(meta, j.dump());
  open_fails({"val.bin", "cannot open"});
  expect_error([&] { TokenData::open(t_ / "nope", 0); }, {"nope", "not a directory"});
}

// ---- bad id inputs and the output directory ----

TEST(TokenDataIds, BadLinesNameFileAndLine) {
  TempDir t;
  const std::string f = t / "ids.jsonl";
  auto fails_with = [&](const std::string& text, std::initializer_list<std::string> parts, int64_t vocab = 0) {
    write_text(f, text);
    expect_error([&] { build_ids(f, t / "out", 0.05, 0, vocab, true); }, parts);
    // Nothing that loads is left behind.
    EXPECT_FALSE(fs::exists(t / "out/meta.json"));
    EXPECT_FALSE(fs::exists(t / "out/train.bin"));
    EXPECT_FALSE(fs::exists(t / "out/train.bin.partial"));
  };
  fails_with("[1,2]\n[3,\n", {f, "line 2", "not valid JSON"});
  fails_with("[1,2]\n\n{\"a\":1}\n", {f, "line 3", "list"});
  fails_with("[1,2.5]\n", {f, "line 1", "not an integer"});
  fails_with("[1,\"2\"]\n", {f, "line 1", "not an integer"});
  fails_with("[1]\n[4,-3]\n", {f, "line 2", "negative"});
  fails_with("[1]\n[4,3000000000]\n", {f, "line 2", "out of range"});
  fails_with("[1,2]\n[9,10]\n", {f, "line 2", "10", "not below the vocabulary size 10"}, 10);
  expect_error([&] { build_ids(t / "missing.jsonl", t / "out"); }, {"missing.jsonl", "not found"});
}

TEST(TokenDataIds, OutputMustBeEmptyUnlessForce) {
  TempDir t;
  write_text(t / "ids.jsonl", "[1,2,3]\n[]\n[4]\n");
  const CorpusSummary s = build_ids(t / "ids.jsonl", t / "out", 0.0);
  EXPECT_EQ(s.skipped_empty, 1);  // [] is no document
  EXPECT_EQ(s.data.train_docs, 2);
  expect_error([&] { build_ids(t / "ids.jsonl", t / "out"); }, {"out", "not empty", "--force"});
  write_text(t / "ids.jsonl", "[7,8]\n");
  build_ids(t / "ids.jsonl", t / "out", 0.0, 0, 0, /*force=*/true);
  const TokenData td = TokenData::open(t / "out", 0);
  EXPECT_EQ(all_tokens(*td.train), (std::vector<int32_t>{7, 8}));
  write_text(t / "file", "x");
  expect_error([&] { build_ids(t / "ids.jsonl", t / "file"); }, {"file", "not a directory"});
}

TEST(TokenDataIds, SplitParagraphs) {
  const std::string text = "\n  \nfirst line\nsecond line\r\n\r\n\t\nthird\n\n\nlast para";
  const auto p = split_paragraphs(text);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0], "first line\nsecond line");
  EXPECT_EQ(p[1], "third");
  EXPECT_EQ(p[2], "last para");
  EXPECT_TRUE(split_paragraphs(" \n\n").empty());
}

// ---- text mode with the real tokenizer ----

class TextMode : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Tokenizer::available(DSV3_TOKENIZER_DIR)) GTEST_SKIP() << "no tokenizer at " << DSV3_TOKENIZER_DIR;
    tok_ = Tokenizer::load(DSV3_TOKENIZER_DIR);
  }
  std::vector<int32_t> doc(const std::string& text, bool bos = true, bool eos = true) {
    std::vector<int32_t> ids;
    if (bos) ids.push_back(tok_->bos_id());
    for (int32_t id : tok_->encode(text, /*match_special=*/false)) ids.push_back(id);
    if (eos) ids.push_back(tok_->eos_id());
    return ids;
  }
  std::unique_ptr<Tokenizer> tok_;
  TempDir t_;
};

TEST_F(TextMode, SameIdsAsEncodePlusBosEos) {
  const std::string a = "Hello world! <｜User｜> is plain text here.\n\nSecond paragraph: 你好，世界。\n";
  const std::string b1 = "naïve café <｜end▁of▁sentence｜>", b2 = "  indented\tline\n";
  write_text(t_ / "a.txt", a);
  write_text(t_ / "b.jsonl", nlohmann::json{{"text", b1}, {"id", 1}}.dump() + "\n\n" + nlohmann::json{{"text", b2}}.dump() + "\n");
  write_text(t_ / "empty.txt", "");
  CorpusOptions o;
  o.tokenizer = DSV3_TOKENIZER_DIR;
  o.files = {t_ / "a.txt", t_ / "b.jsonl", t_ / "empty.txt"};
  o.out = t_ / "out";
  o.val_fraction = 0;
  o.progress = 0;
  const CorpusSummary s = build_token_data(o);
  EXPECT_EQ(s.data.train_docs, 3);
  EXPECT_EQ(s.skipped_empty, 1);
  EXPECT_EQ(s.data.vocab_size, static_cast<int64_t>(tok_->size()));
  std::vector<int32_t> want;
  for (const auto& text : {a, b1, b2}) {
    const auto d = doc(text);
    want.insert(want.end(), d.begin(), d.end());
  }
  const TokenData td = TokenData::open(o.out, 129280);
  EXPECT_EQ(all_tokens(*td.train), want);
  // The special-token text was not matched.
  for (int32_t id : all_tokens(*td.train)) EXPECT_NE(id, 128803);
  EXPECT_EQ(std::count(want.begin(), want.end(), tok_->eos_id()), 3);
  const auto meta = nlohmann::json::parse(std::ifstream(o.out + "/meta.json"));
  EXPECT_EQ(meta["source"]["mode"], "text");
  EXPECT_EQ(meta["source"]["bos_id"], 0);
  EXPECT_FALSE(meta["tokenizer"].is_null());

  // Paragraphs as documents, without BOS/EOS.
  o.files = {t_ / "a.txt"};
  o.out = t_ / "out2";
  o.split_blank_lines = true;
  o.bos = o.eos = false;
  const CorpusSummary p = build_token_data(o);
  EXPECT_EQ(p.data.train_docs, 2);
  std::vector<int32_t> paras = doc("Hello world! <｜User｜> is plain text here.", false, false);
  for (int32_t id : doc("Second paragraph: 你好，世界。", false, false)) paras.push_back(id);
  EXPECT_EQ(all_tokens(*TokenData::open(o.out, 0).train), paras);
}

TEST_F(TextMode, InvalidUtf8IsReplacedAndBadJsonlNamed) {
  write_text(t_ / "bad.txt", std::string("ok \xff\xfe bytes"));
  CorpusOptions o;
  o.tokenizer = DSV3_TOKENIZER_DIR;
  o.files = {t_ / "bad.txt"};
  o.out = t_ / "out";
  o.progress = 0;
  const CorpusSummary s = build_token_data(o);
  EXPECT_EQ(s.invalid_utf8, 1);
  EXPECT_EQ(all_tokens(*TokenData::open(o.out, 0).train), doc("ok \xEF\xBF\xBD\xEF\xBF\xBD bytes"));

  write_text(t_ / "x.jsonl", "{\"text\": \"fine\"}\n{\"txt\": \"no\"}\n");
  o.files = {t_ / "x.jsonl"};
  o.out = t_ / "out3";
  expect_error([&] { build_token_data(o); }, {"x.jsonl line 2", "\"text\""});
  o.files = {t_ / "nothere.txt"};
  expect_error([&] { build_token_data(o); }, {"nothere.txt", "not found"});
  o.files = {t_ / "bad.txt"};
  o.vocab_size = 100;  // ids of real text are larger
  expect_error([&] { build_token_data(o); }, {"bad.txt", "not below the vocabulary size 100"});
}

TEST_F(TextMode, BosEosFromModelConfigWithoutTokenizerConfig) {
  // A folder with tokenizer.json and a model config.json but no tokenizer_config.json.
  fs::create_directories(t_ / "m");
  fs::copy_file(std::string(DSV3_TOKENIZER_DIR) + "/tokenizer.json", t_ / "m/tokenizer.json");
  write_text(t_ / "m/config.json", R"({"bos_token_id": 5, "eos_token_id": [7, 1], "vocab_size": 129280})");
  const auto tok = Tokenizer::load(t_ / "m");
  const SpecialIds s = resolve_special_ids(t_ / "m", *tok);
  EXPECT_EQ(s.bos, 5);
  EXPECT_EQ(s.eos, 7);  // the first of a list
  EXPECT_EQ(resolve_special_ids(DSV3_TOKENIZER_DIR, *tok_).bos, tok_->bos_id());  // tokenizer_config.json wins
  write_text(t_ / "m/config.json", R"({"bos_token_id": "x"})");
  expect_error([&] { resolve_special_ids(t_ / "m/tokenizer.json", *tok); }, {"config.json", "bos_token_id"});
}

// ---- the command ----

TEST(DataCli, IdsModeAndErrors) {
  using dsv3::testing::run_cmd;
  TempDir t;
  write_text(t / "ids.jsonl", "[1,2,3]\n[4,5]\n");
  const std::string bin = DSV3_BIN;
  int rc = -1;
  run_cmd(bin + " data --ids " + t / "ids.jsonl" + " --out " + t / "out" + " --val-fraction 0 --vocab-size 10 2>&1", rc);
  ASSERT_EQ(rc, 0);
  const TokenData td = TokenData::open(t / "out", 10);
  EXPECT_EQ(td.vocab_size, 10);
  EXPECT_EQ(all_tokens(*td.train), (std::vector<int32_t>{1, 2, 3, 4, 5}));
  const std::string again = run_cmd(bin + " data --ids " + t / "ids.jsonl" + " --out " + t / "out" + " 2>&1", rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(again.find("--force"), std::string::npos) << again;
  write_text(t / "bad.jsonl", "[1]\n[2,-1]\n");
  const std::string bad = run_cmd(bin + " data --ids " + t / "bad.jsonl" + " --out " + t / "out2" + " 2>&1", rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(bad.find("bad.jsonl line 2"), std::string::npos) << bad;
  const std::string help = run_cmd(bin + " data --help", rc);
  EXPECT_EQ(rc, 0);
  for (const char* opt : {"--ids", "--val-fraction", "--split-blank-lines", "--no-bos", "--force"})
    EXPECT_NE(help.find(opt), std::string::npos) << opt;

  // Text mode through the flags: --no-bos drops BOS, EOS stays; --no-bos with --ids is refused.
  if (!Tokenizer::available(DSV3_TOKENIZER_DIR)) return;
  write_text(t / "doc.txt", "Hello world");
  const std::string text = run_cmd(bin + " data -m " + DSV3_TOKENIZER_DIR + " --out " + t / "txt" +
                                       " --val-fraction 0 --no-bos " + t / "doc.txt" + " 2>&1",
                                   rc);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("1 documents (1 train, 0 val)"), std::string::npos) << text;
  EXPECT_EQ(all_tokens(*TokenData::open(t / "txt", 129280).train), (std::vector<int32_t>{19923, 2058, 1}));
  run_cmd(bin + " data --ids " + t / "ids.jsonl" + " --out " + t / "out3 --no-bos 2>&1", rc);
  EXPECT_NE(rc, 0);
}

}  // namespace
}  // namespace dsv3
