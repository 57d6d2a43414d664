// A byte-level pushdown automaton for JSON that conforms to a compiled JSON Schema subset (type
// object/array/string/number/integer/boolean/null, properties, required, enum/const, items,
// minItems/maxItems, additionalProperties). It is what constrained decoding walks token bytes
// through (server/token_mask.h): a state accepts or rejects one byte at a time, and it is
// "complete" once one whole value has been written. Whitespace runs are bounded so a model cannot
// loop on spaces forever; numbers are bounded in length for the same reason.
#pragma once
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::server {

enum JsonType : uint8_t {
  kObject = 1, kArray = 2, kString = 4, kNumber = 8, kInteger = 16, kBoolean = 32, kNull = 64, kAnyType = 127
};

// One schema (sub)node. Node 0 is the root of a JsonGrammar.
struct SchemaNode {
  uint8_t types = kAnyType;
  std::vector<std::string> literals;   // compact JSON texts: the enum, or true/false/null as typed
  bool enum_only = false;              // the value must be one of `literals`
  std::vector<std::string> prop_names; // JSON-escaped key bytes, without the quotes [<= 64]
  std::vector<int> prop_nodes;
  uint64_t required = 0;               // bit i: prop_names[i] must appear
  int additional = -1;                 // node of additional properties' values; -1: none allowed
  int items = -1;                      // node of array items
  int min_items = 0, max_items = 0xFFFF;
};

struct JsonGrammar {
  std::vector<SchemaNode> nodes;
  std::vector<int> min_bytes;  // [nodes] length of the shortest value each node accepts
  // response_format {"type": "json_object"}: an object whose values are any JSON.
  static std::shared_ptr<const JsonGrammar> any_object();
  // Compiles a JSON Schema; throws ApiError 400 whose param is `param` + the path of the bad
  // keyword (e.g. "response_format.json_schema.schema.properties.a.pattern").
  static std::shared_ptr<const JsonGrammar> from_schema(const nlohmann::ordered_json& schema, const std::string& param);
};

// One level of the automaton's stack. Plain bytes (no padding), so a state's frames can be hashed
// and compared as memory: the mask cache is keyed by them.
struct JsonFrame {
  uint8_t kind = 0;   // JsonGrammarState::Kind
  uint8_t sub = 0;    // phase of an object/array, number state, string escape state
  uint8_t ws = 0;     // whitespace bytes in the current run
  uint8_t utf8 = 0;   // continuation bytes still owed inside a string
  uint16_t node = 0;  // schema node
  uint16_t pos = 0;   // literal/key byte position, array item count, number length
  uint16_t child = 0; // object: node of the value after the current key; number: exponent digits
  uint16_t pad0 = 0;
  uint32_t pad1 = 0;
  uint64_t bits = 0;  // object: properties seen; key/literal: candidates still matching
};
static_assert(sizeof(JsonFrame) == 24);

class JsonGrammarState {
 public:
  static constexpr int kMaxDepth = 32;  // nesting beyond this is refused
  static constexpr int kMaxWs = 32;     // longest whitespace run between tokens of JSON
  static constexpr int kMaxNumber = 32; // longest number text

  JsonGrammarState() = default;
  explicit JsonGrammarState(const JsonGrammar& g);
  // Consumes one byte; false (and the state is then unspecified) when the grammar rejects it.
  bool advance(uint8_t c);
  bool advance(std::string_view bytes) {
    for (char c : bytes)
      if (!advance(static_cast<uint8_t>(c))) return false;
    return true;
  }
  // One whole value has been written (a root number may still grow, but may also end here).
  bool complete() const;
  // Length of the shortest byte string that makes the state complete(): what constrained
  // decoding keeps within the tokens left, so a value always closes before max_tokens.
  int min_close() const;
  // Copies only the live frames (what advance() reads), which is what makes walking many token
  // candidates from one state cheap.
  void copy_from(const JsonGrammarState& o);
  // The live frames as bytes: equal keys mean equal futures.
  std::string_view key() const {
    return {reinterpret_cast<const char*>(f_.data()), static_cast<size_t>(depth_) * sizeof(JsonFrame)};
  }

 private:
  enum Kind : uint8_t { kValue = 1, kObj, kKey, kArr, kStr, kNum, kLit };
  bool start_value(JsonFrame& fr, uint8_t c);
  bool object_byte(JsonFrame& fr, uint8_t c);
  bool array_byte(JsonFrame& fr, uint8_t c);
  bool key_byte(JsonFrame& fr, uint8_t c);
  bool literal_byte(JsonFrame& fr, uint8_t c);
  bool push(uint8_t kind, uint16_t node);
  bool whitespace(JsonFrame& fr);

  const JsonGrammar* g_ = nullptr;
  int depth_ = 0;
  std::array<JsonFrame, kMaxDepth> f_{};
};

// A value that this state machine accepts: a string that walks to a complete state.
bool json_grammar_accepts(const JsonGrammar& g, std::string_view text);

}  // namespace dsv3::server
