// Reads tokenizer.json in one streaming pass. model.vocab (128K entries) and model.merges (128K)
// go straight into flat vectors instead of a JSON DOM, which would take ~0.5 s to build and free;
// everything else becomes a normal (small) nlohmann::json tree.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace dsv3 {

struct TokenizerJson {
  nlohmann::json rest;  // the document with model.vocab and model.merges left empty
  bool has_vocab = false, has_merges = false;
  std::vector<std::pair<std::string, int64_t>> vocab;              // token text, id
  std::vector<std::pair<std::string, std::string>> merges;         // in rank order
};

// Throws dsv3::Error naming `path` and the problem (invalid JSON, vocab ids that are not
// integers, merges that are neither "a b" nor ["a", "b"]).
TokenizerJson read_tokenizer_json(const std::string& path);

}  // namespace dsv3
