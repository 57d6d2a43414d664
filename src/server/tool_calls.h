// Function calling in DeepSeek-V3's own syntax (spec section 11):
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   [\n<｜tool▁call▁begin｜>...<｜tool▁call▁end｜>]<｜tool▁calls▁end｜><｜end▁of▁sentence｜>
// Parsing of tools/tool_choice, the tool definitions written into the system prompt (V3's chat
// template renders tool calls and results but not the definitions), a token constraint that
// forces that syntax with arguments fitting each tool's JSON schema, and the parser that turns
// the generated text back into OpenAI tool_calls (whole, or incrementally for streams).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/constraint.h"
#include "server/json_grammar.h"

namespace dsv3 {
class Tokenizer;
}

namespace dsv3::server {

class VocabIndex;
struct ModelInfo;

inline constexpr const char* kCallsBegin = "<｜tool▁calls▁begin｜>";
inline constexpr const char* kCallsEnd = "<｜tool▁calls▁end｜>";
inline constexpr const char* kCallBegin = "<｜tool▁call▁begin｜>";
inline constexpr const char* kCallEnd = "<｜tool▁call▁end｜>";
inline constexpr const char* kToolSep = "<｜tool▁sep｜>";

struct ToolSpec {
  std::string name, description;
  nlohmann::ordered_json parameters;          // as given (an object schema)
  std::shared_ptr<const JsonGrammar> args;    // compiled parameters (any object when not strict
                                              // and the schema uses keywords we cannot enforce)
};

struct ToolsRequest {
  enum Choice { kNone, kAuto, kRequired, kNamed };
  std::vector<ToolSpec> tools;
  Choice choice = kNone;
  std::string named;       // kNamed: the tool that must be called
  bool parallel = true;    // parallel_tool_calls: several calls in one turn
  bool active() const { return choice != kNone && !tools.empty(); }
};

// tools / tool_choice / parallel_tool_calls of a chat request (400 naming e.g. "tools[1].function.name").
ToolsRequest parse_tools(const nlohmann::ordered_json& j, const ModelInfo& m);

// The text added to the system prompt (a system message is created when there is none).
std::string tools_system_prompt(const ToolsRequest& t);

// Constrains decoding to the tool-call syntax: from the first token for required/named, after
// the model opens <｜tool▁calls▁begin｜> itself for auto.
ConstraintFactory tool_call_constraint(const ToolsRequest& t, const Tokenizer& tok,
                                       std::shared_ptr<const VocabIndex> vocab);

struct ToolCall {
  std::string name, arguments;
};

// Splits generated text into content and tool calls, as it streams in. push() returns the
// content that can be shown now (text that might be the start of <｜tool▁calls▁begin｜> waits);
// calls() grows as each <｜tool▁call▁end｜> arrives.
class ToolCallParser {
 public:
  std::string push(const std::string& text);
  std::string flush();  // end of generation: content held back, if the calls never began
  const std::vector<ToolCall>& calls() const { return calls_; }

 private:
  void parse_calls();
  std::string pending_;
  bool in_calls_ = false;
  std::vector<ToolCall> calls_;
};

// A fresh "call_..." id (random, 24 hex digits).
std::string tool_call_id();

// {"id", "type": "function", "function": {"name", "arguments"}} (+ "index" for stream deltas).
nlohmann::ordered_json tool_call_json(const ToolCall& c, const std::string& id, int index = -1);

}  // namespace dsv3::server
