#include "server/tool_calls.h"

#include <fmt/format.h>

#include <cstring>
#include <random>

#include "server/api_error.h"
#include "server/reasoning.h"
#include "server/request.h"
#include "server/token_mask.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::server {

using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxTools = 64;  // the name candidates are a 64-bit mask
const char* const kFence = "\n```json\n";
const char* const kFenceEnd = "\n```";

// obj[key] when it is a string, else "" (value() would throw on another type).
std::string str_field(const ojson& obj, const char* key, const std::string& absent) {
  if (!obj.is_object() || !obj.contains(key)) return absent;
  return obj.at(key).is_string() ? obj.at(key).get<std::string>() : std::string("\x01");  // never a valid value
}

bool valid_name(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') return false;
  return true;
}

// The arguments' grammar: the schema when it can be enforced and describes an object; otherwise a
// strict tool is refused and a non-strict one gets "any JSON object".
std::shared_ptr<const JsonGrammar> args_grammar(const ojson& params, bool strict, const std::string& param) {
  try {
    auto g = JsonGrammar::from_schema(params, param);
    if (g->nodes[0].types != kObject) bad_request(param, fmt::format("{}: the parameters must be an object schema", param), "invalid_schema");
    return g;
  } catch (const ApiError&) {
    if (strict) throw;
    return JsonGrammar::any_object();
  }
}

}  // namespace

ToolsRequest parse_tools(const ojson& j, const ModelInfo& m) {
  ToolsRequest t;
  auto has = [&](const char* k) { return j.contains(k) && !j.at(k).is_null(); };
  if (has("tools")) {
    const ojson& tools = j.at("tools");
    if (!tools.is_array()) bad_request("tools", "'tools' must be an array", "invalid_type");
    if (tools.size() > kMaxTools) bad_request("tools", fmt::format("at most {} tools", kMaxTools));
    for (size_t i = 0; i < tools.size(); ++i) {
      const std::string at = fmt::format("tools[{}]", i);
      const ojson& x = tools[i];
      if (!x.is_object() || str_field(x, "type", "function") != "function" || !x.contains("function") ||
          !x.at("function").is_object())
        bad_request(at, fmt::format("'{}' must be {{\"type\": \"function\", \"function\": {{...}}}}", at), "invalid_type");
      const ojson& f = x.at("function");
      ToolSpec s;
      if (!f.contains("name") || !f.at("name").is_string() || !valid_name(f.at("name").get<std::string>()))
        bad_request(at + ".function.name", "a function name is 1-64 characters of a-z, A-Z, 0-9, _, - and .");
      s.name = f.at("name").get<std::string>();
      for (const auto& o : t.tools)
        if (o.name == s.name) bad_request(at + ".function.name", fmt::format("two tools are named '{}'", s.name));
      if (f.contains("description") && !f.at("description").is_null()) {
        if (!f.at("description").is_string()) bad_request(at + ".function.description", "'description' must be a string", "invalid_type");
        s.description = f.at("description").get<std::string>();
      }
      s.parameters = f.contains("parameters") && !f.at("parameters").is_null()
                         ? f.at("parameters") : ojson{{"type", "object"}, {"properties", ojson::object()}};
      const bool strict = f.contains("strict") && f.at("strict").is_boolean() && f.at("strict").get<bool>();
      s.args = args_grammar(s.parameters, strict, at + ".function.parameters");
      t.tools.push_back(std::move(s));
    }
  }
  t.choice = t.tools.empty() ? ToolsRequest::kNone : ToolsRequest::kAuto;
  if (has("tool_choice")) {
    const ojson& c = j.at("tool_choice");
    const std::string s = c.is_string() ? c.get<std::string>() : "";
    if (s == "none") t.choice = ToolsRequest::kNone;
    else if (s == "auto") t.choice = ToolsRequest::kAuto;
    else if (s == "required") t.choice = ToolsRequest::kRequired;
    else if (c.is_object() && str_field(c, "type", "") == "function" && c.contains("function") &&
             c.at("function").is_object() && c.at("function").contains("name") && c.at("function").at("name").is_string()) {
      t.choice = ToolsRequest::kNamed;
      t.named = c.at("function").at("name").get<std::string>();
      bool found = false;
      for (const auto& x : t.tools) found |= x.name == t.named;
      if (!found) bad_request("tool_choice", fmt::format("tool_choice names '{}', which is not in 'tools'", t.named));
    } else {
      bad_request("tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                 "{\"type\": \"function\", \"function\": {\"name\": ...}}");
    }
    if (t.choice != ToolsRequest::kNone && t.tools.empty())
      bad_request("tool_choice", "'tool_choice' needs 'tools'");
  }
  if (has("parallel_tool_calls")) {
    if (!j.at("parallel_tool_calls").is_boolean())
      bad_request("parallel_tool_calls", "'parallel_tool_calls' must be a boolean", "invalid_type");
    t.parallel = j.at("parallel_tool_calls").get<bool>();
  }
  if (t.active()) {
    for (const char* tk : {kCallsBegin, kCallsEnd, kCallBegin, kCallEnd, kToolSep})
      if (!m.tok || !m.tok->token_id(tk))
        bad_request("tools", fmt::format("this model's tokenizer has no {} token: tools are not available", tk),
                    "no_tool_tokens");
    if (!m.vocab) bad_request("tools", "function calling needs the tokenizer's vocabulary", "no_tokenizer");
  }
  return t;
}

std::string tools_system_prompt(const ToolsRequest& t) {
  std::string s = "## Tools\nYou have access to the following tools:\n";
  for (const auto& x : t.tools) {
    s += "\n### " + x.name + "\n";
    if (!x.description.empty()) s += "Description: " + x.description + "\n";
    s += "Parameters: " + to_text(x.parameters) + "\n";
  }
  s += fmt::format(
      "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
      "{}{}function{}tool_call_name\n```json\ntool_call_arguments\n```{}{}\n\n"
      "Where:\n"
      "- `tool_call_name` must be an exact match to one of the available tools\n"
      "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters Schema\n"
      "- For multiple tool calls, write the {}...{} blocks one after another, separated by a newline",
      kCallsBegin, kCallBegin, kToolSep, kCallEnd, kCallsEnd, kCallBegin, kCallEnd);
  if (t.choice == ToolsRequest::kRequired) s += "\n\nYou must call at least one tool.";
  if (t.choice == ToolsRequest::kNamed) s += "\n\nYou must call the tool " + t.named + ".";
  return s;
}

// ---------------------------------------------------------------------------------------------
// The constraint.

namespace {

// A stretch of text between two tool tokens: one of `heads`, then (if that head has one) a JSON
// value of its grammar, then `tail`. Heads are prefix-free (each ends in the same fence).
struct Segment {
  uint8_t id = 0;
  std::vector<std::string> heads;
  std::vector<std::shared_ptr<const JsonGrammar>> bodies;  // per head; null: none
  std::string tail;
};

class SegmentState {
 public:
  SegmentState() = default;
  explicit SegmentState(const Segment& s) : seg_(&s), alive_(s.heads.size() >= 64 ? ~0ull : (1ull << s.heads.size()) - 1) {}
  void copy_from(const SegmentState& o) {
    seg_ = o.seg_;
    stage_ = o.stage_;
    pos_ = o.pos_;
    alive_ = o.alive_;
    chosen_ = o.chosen_;
    if (stage_ == 1) json_.copy_from(o.json_);
  }
  bool advance(uint8_t c) {
    if (stage_ == 0) {
      uint64_t next = 0;
      for (size_t i = 0; i < seg_->heads.size(); ++i)
        if ((alive_ >> i & 1) && seg_->heads[i].size() > pos_ && static_cast<uint8_t>(seg_->heads[i][pos_]) == c)
          next |= 1ull << i;
      if (!next) return false;
      alive_ = next;
      ++pos_;
      for (size_t i = 0; i < seg_->heads.size(); ++i)
        if ((alive_ >> i & 1) && seg_->heads[i].size() == pos_) {
          chosen_ = static_cast<int>(i);
          pos_ = 0;
          stage_ = seg_->bodies[i] ? 1 : 2;
          if (stage_ == 1) json_ = JsonGrammarState(*seg_->bodies[i]);
        }
      return true;
    }
    if (stage_ == 1) {
      // The arguments are an object: complete exactly at its closing brace, after which the
      // bytes belong to the tail.
      if (!json_.complete()) return json_.advance(c);
      stage_ = 2;
      pos_ = 0;
    }
    if (pos_ < seg_->tail.size() && static_cast<uint8_t>(seg_->tail[pos_]) == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool advance(std::string_view b) {
    for (char c : b)
      if (!advance(static_cast<uint8_t>(c))) return false;
    return true;
  }
  bool complete() const { return stage_ == 2 && pos_ == seg_->tail.size(); }
  bool untouched() const { return stage_ == 0 && pos_ == 0; }
  std::string key() const {
    std::string k(1 + 1 + sizeof pos_ + sizeof alive_ + sizeof chosen_, '\0');
    char* p = k.data();
    *p++ = static_cast<char>(seg_->id);
    *p++ = static_cast<char>(stage_);
    std::memcpy(p, &pos_, sizeof pos_), p += sizeof pos_;
    std::memcpy(p, &alive_, sizeof alive_), p += sizeof alive_;
    std::memcpy(p, &chosen_, sizeof chosen_);
    if (stage_ == 1) k += json_.key();
    return k;
  }

 private:
  const Segment* seg_ = nullptr;
  uint8_t stage_ = 0;  // 0 head, 1 JSON body, 2 tail
  uint16_t pos_ = 0;
  uint64_t alive_ = 0;
  int chosen_ = -1;
  JsonGrammarState json_;
};

struct ToolProgram {
  Segment function, call, newline;
  int32_t calls_begin = -1, calls_end = -1, call_begin = -1, call_end = -1, sep = -1, eos = -1;
  bool parallel = true;
  bool free_start = true;  // auto: unconstrained until the model opens the calls itself
};

class ToolCallConstraint : public TokenConstraint {
 public:
  ToolCallConstraint(std::shared_ptr<const ToolProgram> p, std::shared_ptr<const VocabIndex> v,
                     std::shared_ptr<MaskCache> cache)
      : p_(std::move(p)), vocab_(std::move(v)), cache_(std::move(cache)), phase_(p_->free_start ? kFree : kCallsBegin) {}

  void mask(float* logits, int64_t V, int64_t /*left*/) override {
    const ToolProgram& p = *p_;
    auto only = [&](std::initializer_list<int32_t> ids, const SegmentState* text) {
      std::vector<int32_t> also(ids);
      std::shared_ptr<const CachedMask> m;
      if (text) m = cache_->get(*vocab_, text->key(), *text);
      mask_logits(logits, V, m ? &m->bits : nullptr, also, p.eos);
    };
    switch (phase_) {
      case kFree: case kOff: return;
      case kCallsBegin: return only({p.calls_begin}, nullptr);
      case kCallBegin: return only({p.call_begin}, nullptr);
      case kFunction: return seg_.complete() ? only({p.sep}, nullptr) : only({}, &seg_);
      case kCall: return seg_.complete() ? only({p.call_end}, nullptr) : only({}, &seg_);
      case kBetween:
        if (seg_.complete()) return only({p.call_begin}, nullptr);
        if (!p.parallel) return only({p.calls_end}, nullptr);
        return seg_.untouched() ? only({p.calls_end}, &seg_) : only({}, &seg_);
      case kEnd: return only({p.eos}, nullptr);
    }
  }

  void accept(int32_t t) override {
    const ToolProgram& p = *p_;
    auto text = [&] { return vocab_->is_text(t) && seg_.advance(vocab_->bytes(t)); };
    bool ok = true;
    switch (phase_) {
      case kOff: return;
      case kFree:
        if (t == p.calls_begin) phase_ = kCallBegin;
        return;
      case kCallsBegin: ok = t == p.calls_begin, phase_ = kCallBegin; break;
      case kCallBegin: ok = t == p.call_begin, start(kFunction, p.function); break;
      case kFunction:
        if (t == p.sep) ok = seg_.complete(), start(kCall, p.call);
        else ok = text();
        break;
      case kCall:
        if (t == p.call_end) ok = seg_.complete(), start(kBetween, p.newline);
        else ok = text();
        break;
      case kBetween:
        if (t == p.calls_end) phase_ = kEnd;
        else if (t == p.call_begin) ok = seg_.complete(), start(kFunction, p.function);
        else ok = text();
        break;
      case kEnd: phase_ = kOff; return;
    }
    if (!ok) phase_ = kOff;  // a token the mask did not allow: stop constraining
  }

 private:
  enum Phase { kFree, kCallsBegin, kCallBegin, kFunction, kCall, kBetween, kEnd, kOff };
  void start(Phase ph, const Segment& s) {
    phase_ = ph;
    seg_ = SegmentState(s);
  }
  std::shared_ptr<const ToolProgram> p_;
  std::shared_ptr<const VocabIndex> vocab_;
  std::shared_ptr<MaskCache> cache_;
  Phase phase_;
  SegmentState seg_;
};

}  // namespace

ConstraintFactory tool_call_constraint(const ToolsRequest& t, const Tokenizer& tok, std::shared_ptr<const VocabIndex> vocab) {
  auto p = std::make_shared<ToolProgram>();
  p->function = Segment{0, {"function"}, {nullptr}, ""};
  p->call.id = 1;
  for (const auto& x : t.tools) {
    if (t.choice == ToolsRequest::kNamed && x.name != t.named) continue;
    p->call.heads.push_back(x.name + kFence);
    p->call.bodies.push_back(x.args);
  }
  p->call.tail = kFenceEnd;
  p->newline = Segment{2, {"\n"}, {nullptr}, ""};
  p->calls_begin = *tok.token_id(kCallsBegin);
  p->calls_end = *tok.token_id(kCallsEnd);
  p->call_begin = *tok.token_id(kCallBegin);
  p->call_end = *tok.token_id(kCallEnd);
  p->sep = *tok.token_id(kToolSep);
  p->eos = tok.eos_id();
  p->parallel = t.parallel;
  p->free_start = t.choice == ToolsRequest::kAuto;
  auto cache = std::make_shared<MaskCache>();
  return [p, vocab, cache] { return std::make_unique<ToolCallConstraint>(p, vocab, cache); };
}

// ---------------------------------------------------------------------------------------------
// Parsing the output.

std::string ToolCallParser::push(const std::string& text) {
  pending_ += text;
  if (in_calls_) {
    parse_calls();
    return {};
  }
  const std::string marker = kCallsBegin;
  const size_t b = pending_.find(marker);
  std::string out;
  if (b != std::string::npos) {
    out = pending_.substr(0, b);
    pending_.erase(0, b + marker.size());
    in_calls_ = true;
    parse_calls();
    return out;
  }
  // Hold back a tail that may be the start of the marker (it can arrive as plain bytes).
  const size_t hold = partial_marker(pending_, marker);
  out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string ToolCallParser::flush() {
  if (in_calls_) return {};
  std::string out;
  out.swap(pending_);
  return out;
}

void ToolCallParser::parse_calls() {
  const std::string end = kCallEnd, sep = kToolSep;
  size_t e;
  while ((e = pending_.find(end)) != std::string::npos) {
    const std::string one = pending_.substr(0, e);  // [\n]<call begin>function<sep>NAME\n```json\nARGS\n```
    pending_.erase(0, e + end.size());
    const size_t s = one.find(sep);
    if (s == std::string::npos) continue;
    std::string rest = one.substr(s + sep.size());
    const size_t nl = rest.find('\n');
    ToolCall c;
    c.name = rest.substr(0, nl);
    std::string args = nl == std::string::npos ? "" : rest.substr(nl + 1);
    if (args.rfind("```json", 0) == 0) args.erase(0, 7);
    const size_t fence = args.rfind("```");
    if (fence != std::string::npos) args.erase(fence);
    const size_t a = args.find_first_not_of(" \n\t\r"), z = args.find_last_not_of(" \n\t\r");
    c.arguments = a == std::string::npos ? "{}" : args.substr(a, z - a + 1);
    calls_.push_back(std::move(c));
  }
}

std::string tool_call_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("call_{:016x}{:08x}", rng(), static_cast<uint32_t>(rng()));
}

ojson tool_call_json(const ToolCall& c, const std::string& id, int index) {
  ojson j;
  if (index >= 0) j["index"] = index;
  j["id"] = id;
  j["type"] = "function";
  j["function"] = {{"name", c.name}, {"arguments", c.arguments}};
  return j;
}

}  // namespace dsv3::server
