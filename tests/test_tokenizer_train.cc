// The BPE trainer (`dsv3 tokenizer train`): trained tokenizers load with dsv3's own loader, round
// trip text, have exactly the requested size and DeepSeek-V3's structure, and training is
// deterministic (threads, chunking). Parity with Hugging Face's trainer and encoder is
// tests/e2e/tokenizer_train_hf_parity.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "chat/chat_template.h"
#include "core/error.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/deepseek_v3.h"
#include "tokenizer/tokenizer.h"

namespace dsv3 {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

// Made-up text with a Zipf-like word distribution, in several scripts, with numbers, punctuation,
// indentation and blank lines (the places where chunking could change pre-tokenization).
std::string make_text(uint32_t seed, size_t bytes) {
  static const char* words[] = {"the",  "of",    "and",   "to",      "in",     "is",     "tokenizer", "model",
                                "byte", "merge", "pair",  "Привет",  "мир",    "数据",   "模型",      "日本語",
                                "über", "café",  "naïve", "function", "return", "x_1",   "DeepSeek",  "V3"};
  static const char* seps[] = {" ", " ", " ", " ", ", ", ". ", "\n", "\n\n", "\n    ", "  ", "\t", "! ", "? ", "\r\n"};
  std::mt19937 rng(seed);
  std::string s;
  while (s.size() < bytes) {
    // Zipf-ish: small indices much more often.
    size_t w = std::min<size_t>(std::size(words) - 1, static_cast<size_t>(std::exponential_distribution<>(0.25)(rng)));
    if (rng() % 4 == 0) {  // a made-up word from syllables: many distinct, partly shared pieces
      static const char* syl[] = {"ka", "ri", "to", "men", "sa", "lo", "qu", "ver", "ing", "ст", "ра", "ção", "zh"};
      for (uint32_t k = 0, n = 1 + rng() % 4; k < n; ++k) s += syl[rng() % std::size(syl)];
    } else {
      s += words[w];
    }
    uint32_t r = rng() % 100;
    if (r < 5) s += std::to_string(rng() % 100000);
    if (r >= 5 && r < 8) s += "(\"" + std::string(words[rng() % std::size(words)]) + "\")";
    s += seps[rng() % std::size(seps)];
  }
  return s;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("dsv3_tok_train_{}_{}", name, ::getpid());
  fs::remove_all(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TrainedBpe train_on(const std::string& text, int64_t vocab, int64_t min_frequency = 0) {
  BpeTrainer t({vocab, min_frequency, 1, false});
  t.add_text(text);
  return t.train();
}

struct Trained {
  fs::path dir;
  std::unique_ptr<Tokenizer> tok;
};

Trained train_and_load(const std::string& name, const std::string& text, int64_t vocab) {
  Trained r{temp_dir(name), nullptr};
  write_trained_tokenizer(train_on(text, vocab), r.dir.string(), false);
  r.tok = Tokenizer::load(r.dir.string());
  return r;
}

TEST(TokenizerTrain, LoadsRoundTripsAndHasExactSize) {
  const int64_t vocab = 600;
  Trained t = train_and_load("basic", make_text(1, 60000), vocab);
  const Tokenizer& tok = *t.tok;
  EXPECT_EQ(tok.size(), static_cast<size_t>(vocab));
  for (int32_t id = 0; id < vocab; ++id) EXPECT_TRUE(tok.has_token(id)) << id;
  EXPECT_FALSE(tok.has_token(static_cast<int32_t>(vocab)));
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(*tok.token_id("<｜▁pad▁｜>"), 2);
  EXPECT_TRUE(tok.is_special(0) && tok.is_special(1) && tok.is_special(2));
  // The trailing added tokens take the last ids, in DeepSeek-V3's order.
  const auto& trail = deepseek_v3::kTrailingTokens;
  for (size_t i = 0; i < trail.size(); ++i) {
    EXPECT_EQ(*tok.token_id(trail[i].content), vocab - static_cast<int64_t>(trail.size() - i));
    EXPECT_EQ(tok.is_special(*tok.token_id(trail[i].content)), trail[i].special);
  }

  // Held-out text (other seed, plus characters never seen in training) round trips byte for byte.
  std::string held = make_text(2, 20000) + "Ünïcödé ✓ 🙂 ĀĂ\x01\x7f tab\tend\n";
  std::vector<int32_t> ids = tok.encode(held);
  EXPECT_EQ(tok.decode(ids), held);
  EXPECT_LT(ids.size(), held.size() / 2);  // merges compress the text

  // Added tokens are matched as single ids.
  std::string chat = "<｜begin▁of▁sentence｜>sys<｜User｜>the model<｜Assistant｜>ok<｜end▁of▁sentence｜>";
  ids = tok.encode(chat);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  EXPECT_NE(std::find(ids.begin(), ids.end(), *tok.token_id("<｜User｜>")), ids.end());
  EXPECT_EQ(tok.decode(ids), chat);
  fs::remove_all(t.dir);
}

TEST(TokenizerTrain, CommonWordsBecomeSingleTokens) {
  Trained t = train_and_load("common", make_text(3, 60000), 800);
  for (const char* w : {" the", " of", " and", " tokenizer", "Привет", " model"})
    EXPECT_EQ(t.tok->encode(w).size(), 1u) << w;
  // Digits are split in runs of at most three before BPE, so no token spans four digits.
  EXPECT_GE(t.tok->encode("12345678").size(), 3u);
  fs::remove_all(t.dir);
}

TEST(TokenizerTrain, MatchesDeepSeekV3Structure) {
  TrainedBpe r = train_on(make_text(4, 20000), 500);
  json mine = json::parse(trained_tokenizer_json(r));
  EXPECT_EQ(mine["model"]["vocab"].size(), r.tokens.size());
  EXPECT_EQ(mine["added_tokens"].size(), 18u);
  // ids 3..258: the byte symbols in code-point order, as in DeepSeek-V3.
  EXPECT_EQ(mine["model"]["vocab"]["!"], 3);
  EXPECT_EQ(mine["model"]["vocab"]["Ġ"], 3 + 188 + 32);  // 188 printable bytes, then 0x00..0x1f
  EXPECT_TRUE(mine["model"]["merges"][0].is_string());

  fs::path real = fs::path(DSV3_TOKENIZER_DIR) / "tokenizer.json";
  if (!fs::exists(real)) GTEST_SKIP() << "no DeepSeek-V3 tokenizer.json at " << real;
  json theirs = json::parse(slurp(real));
  for (const char* key : {"version", "truncation", "padding", "normalizer", "pre_tokenizer", "post_processor", "decoder"})
    EXPECT_EQ(mine[key], theirs[key]) << key;
  json mm = mine["model"], tm = theirs["model"];
  for (auto* m : {&mm, &tm}) {
    m->erase("vocab");
    m->erase("merges");
  }
  EXPECT_EQ(mm, tm);
  std::vector<std::string> text_of(259);  // specials and byte symbols keep DeepSeek-V3's ids
  for (auto& [k, v] : theirs["model"]["vocab"].items())
    if (v.get<int>() < 259) text_of[v.get<int>()] = k;
  for (int id = 0; id < 259; ++id) EXPECT_EQ(mine["model"]["vocab"][text_of[id]], id) << text_of[id];
  for (const auto& a : mine["added_tokens"]) {
    bool found = false;
    for (const auto& b : theirs["added_tokens"]) {
      if (b["content"] != a["content"]) continue;
      found = true;
      json x = a, y = b;
      x.erase("id");
      y.erase("id");
      EXPECT_EQ(x, y);
    }
    EXPECT_TRUE(found) << a["content"];
  }
}

TEST(TokenizerTrain, ConfigAndChatTemplate) {
  Trained t = train_and_load("chat", make_text(5, 20000), 400);
  json cfg = json::parse(slurp(t.dir / "tokenizer_config.json"));
  EXPECT_EQ(cfg["tokenizer_class"], "LlamaTokenizerFast");
  EXPECT_EQ(cfg["add_bos_token"], true);
  EXPECT_EQ(cfg["add_eos_token"], false);
  EXPECT_EQ(cfg["pad_token"]["content"], "<｜▁pad▁｜>");
  ChatTemplate tmpl = ChatTemplate::load(t.dir.string());
  json messages = json::parse(R"([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}])");
  EXPECT_EQ(tmpl.render(messages, true),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜><｜User｜>Bye<｜Assistant｜>");
  fs::remove_all(t.dir);

  fs::path real = fs::path(DSV3_TOKENIZER_DIR) / "tokenizer_config.json";
  if (!fs::exists(real)) GTEST_SKIP() << "no DeepSeek-V3 tokenizer_config.json";
  json theirs = json::parse(slurp(real));
  EXPECT_EQ(cfg["chat_template"], theirs["chat_template"]);
  EXPECT_EQ(cfg["model_max_length"], theirs["model_max_length"]);
  EXPECT_EQ(cfg["bos_token"], theirs["bos_token"]);
  EXPECT_EQ(cfg["eos_token"], theirs["eos_token"]);
}

TEST(TokenizerTrain, Deterministic) {
  std::string text = make_text(6, 50000);
  EXPECT_EQ(trained_tokenizer_json(train_on(text, 700)), trained_tokenizer_json(train_on(text, 700)));
}

// Files are read in chunks cut only where pre-tokenization cannot change, and counted on several
// threads: the result equals counting each file as one text on one thread.
TEST(TokenizerTrain, ChunkingAndThreadsDoNotChangeTheResult) {
  fs::path dir = temp_dir("chunks");
  fs::create_directories(dir);
  std::vector<std::string> files;
  std::vector<std::string> texts;
  for (uint32_t i = 0; i < 3; ++i) {
    texts.push_back(make_text(10 + i, i == 0 ? (9u << 20) : 100000));  // the first spans 3 chunks
    files.push_back((dir / fmt::format("part{}.txt", i)).string());
    std::ofstream(files.back(), std::ios::binary) << texts.back();
  }
  BpeTrainer whole({1000, 0, 1, false});
  for (const auto& t : texts) whole.add_text(t);
  BpeTrainer streamed({1000, 0, 2, false});
  streamed.add_files(files);
  EXPECT_EQ(whole.distinct_words(), streamed.distinct_words());
  EXPECT_EQ(whole.bytes_seen(), streamed.bytes_seen());
  EXPECT_EQ(trained_tokenizer_json(whole.train()), trained_tokenizer_json(streamed.train()));
  fs::remove_all(dir);
}

TEST(TokenizerTrain, RunsOutOfPairs) {
  // "ab ab ab": few distinct pairs; the vocab stops early (with a warning) and stays loadable.
  TrainedBpe r = train_on("ab ab ab", 1000);
  EXPECT_LT(r.total_size(), 1000);
  EXPECT_EQ(r.merges.size(), 2u);  // words "ab" x1, "Ġab" x2: "a b" (3), then "Ġ ab" (2)
  fs::path dir = temp_dir("small");
  write_trained_tokenizer(r, dir.string(), false);
  auto tok = Tokenizer::load(dir.string());
  EXPECT_EQ(tok->size(), static_cast<size_t>(r.total_size()));
  EXPECT_EQ(tok->encode("ab ab").size(), 2u);
  fs::remove_all(dir);
}

TEST(TokenizerTrain, MinFrequencyStopsEarly) {
  std::string text = make_text(7, 30000);
  TrainedBpe all = train_on(text, 5000), frequent = train_on(text, 5000, 50);
  EXPECT_LT(frequent.merges.size(), all.merges.size());
  // The frequent merges are the first merges of the unrestricted run.
  ASSERT_GT(frequent.merges.size(), 10u);
  for (size_t i = 0; i < frequent.merges.size(); ++i) EXPECT_EQ(frequent.merges[i], all.merges[i]) << i;
}

TEST(TokenizerTrain, Errors) {
  EXPECT_THROW(BpeTrainer({BpeTrainer::min_vocab_size() - 1, 0, 1, false}), Error);
  EXPECT_NO_THROW(BpeTrainer({BpeTrainer::min_vocab_size(), 0, 1, false}));
  BpeTrainer t({400, 0, 1, false});
  EXPECT_THROW(t.add_files({"/nonexistent/file.txt"}), Error);
  fs::path dir = temp_dir("nonempty");
  fs::create_directories(dir);
  std::ofstream(dir / "other.txt") << "x";
  TrainedBpe r = train_on("hello world", 300);
  EXPECT_THROW(write_trained_tokenizer(r, dir.string(), false), Error);
  EXPECT_NO_THROW(write_trained_tokenizer(r, dir.string(), true));
  EXPECT_TRUE(fs::exists(dir / "tokenizer.json"));
  for (const auto& e : fs::directory_iterator(dir))  // no temporary files left behind
    EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << e.path();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dsv3
