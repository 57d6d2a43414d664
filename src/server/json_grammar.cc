#include "server/json_grammar.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "server/api_error.h"

namespace dsv3::server {

using ojson = nlohmann::ordered_json;

namespace {

constexpr size_t kMaxProps = 64;   // a key's candidates are a 64-bit mask
constexpr size_t kMaxEnum = 64;    // likewise an enum's
constexpr size_t kMaxNodes = 4096;

uint64_t all_bits(size_t n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }
bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }
bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
bool is_hex(uint8_t c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

// JSON string content, one byte at a time: escapes (no lone surrogates through \u) and UTF-8
// exactly as strict parsers accept it (no overlongs, no surrogates, nothing above U+10FFFF).
// fr.sub: 0 plain, 1 after '\', 2..5 the hex digits of \u; fr.utf8: continuation bytes owed in
// bits 0-1 and, in bits 2-4, the narrower range the next one must fall in.
// Returns 0 reject, 1 consumed, 2 the closing quote.
int string_byte(JsonFrame& fr, uint8_t c) {
  if (fr.sub == 1) {
    if (c == 'u') { fr.sub = 2; fr.utf8 = 0; return 1; }
    if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') {
      fr.sub = 0;
      return 1;
    }
    return 0;
  }
  if (fr.sub >= 2) {
    if (!is_hex(c)) return 0;
    if (fr.sub == 2) fr.utf8 = (c == 'd' || c == 'D');            // \uD...: maybe a surrogate
    else if (fr.sub == 3 && fr.utf8 && c >= '8') return 0;        // \uD8xx-\uDFxx refused
    if (fr.sub == 3) fr.utf8 = 0;
    fr.sub = fr.sub == 5 ? 0 : fr.sub + 1;
    return 1;
  }
  if (fr.utf8) {
    static constexpr uint8_t lo[] = {0x80, 0xA0, 0x80, 0x90, 0x80}, hi[] = {0xBF, 0xBF, 0x9F, 0xBF, 0x8F};
    const int range = fr.utf8 >> 2;
    if (c < lo[range] || c > hi[range]) return 0;
    fr.utf8 = static_cast<uint8_t>((fr.utf8 & 3) - 1);
    return 1;
  }
  if (c == '"') return 2;
  if (c == '\\') { fr.sub = 1; return 1; }
  if (c < 0x20) return 0;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) fr.utf8 = 1;
  else if (c == 0xE0) fr.utf8 = 2 | (1 << 2);
  else if (c == 0xED) fr.utf8 = 2 | (2 << 2);
  else if (c >= 0xE1 && c <= 0xEF) fr.utf8 = 2;
  else if (c == 0xF0) fr.utf8 = 3 | (3 << 2);
  else if (c == 0xF4) fr.utf8 = 3 | (4 << 2);
  else if (c >= 0xF1 && c <= 0xF3) fr.utf8 = 3;
  else return 0;
  return 1;
}

// Number states (fr.sub): 0 after '-', 1 int "0", 2 int digits, 3 after '.', 4 fraction,
// 5 after 'e', 6 exponent sign, 7 exponent digits. Returns 0 reject, 1 consumed, 2 the byte
// ends the number (which was complete) and belongs to the parent.
bool num_accepting(uint8_t sub) { return sub == 1 || sub == 2 || sub == 4 || sub == 7; }
int number_byte(JsonFrame& fr, uint8_t c, bool integer_only) {
  const bool acc = num_accepting(fr.sub);
  int next = -1;
  const bool frac_ok = !integer_only && (fr.sub == 1 || fr.sub == 2);
  if (is_digit(c)) {
    static constexpr int on_digit[] = {2, -1, 2, 4, 4, 7, 7, 7};
    next = fr.sub == 0 && c == '0' ? 1 : on_digit[fr.sub];
  } else if (c == '.' && frac_ok) {
    next = 3;
  } else if ((c == 'e' || c == 'E') && (frac_ok || (fr.sub == 4 && !integer_only))) {
    next = 5;
  } else if ((c == '+' || c == '-') && fr.sub == 5) {
    next = 6;
  }
  // At most 2 exponent digits: 1e999 is valid JSON but overflows a double in most parsers.
  if (next == 7 && fr.sub == 7 && fr.child >= 2) next = -1;
  // Integers stay within 18 characters so they fit an int64 wherever they are parsed.
  if (next < 0 || fr.pos >= (integer_only ? 18 : JsonGrammarState::kMaxNumber)) return acc ? 2 : 0;
  if (next == 7) ++fr.child;
  fr.sub = static_cast<uint8_t>(next);
  ++fr.pos;
  return 1;
}

// Bytes a string frame still owes before its closing quote could come: the rest of an escape
// (1 after a backslash, the missing hex digits of a \u escape) or of a UTF-8 sequence.
int string_owed(const JsonFrame& fr) { return fr.sub == 1 ? 1 : fr.sub >= 2 ? 6 - fr.sub : fr.utf8 & 3; }

bool literal_done(const SchemaNode& n, const JsonFrame& fr) {
  for (size_t i = 0; i < n.literals.size(); ++i)
    if ((fr.bits >> i & 1) && n.literals[i].size() == fr.pos) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Schema compilation.

class Compiler {
 public:
  Compiler(JsonGrammar& g, std::string base) : g_(g), base_(std::move(base)) {}

  int any() {
    if (any_ < 0) {
      any_ = add();
      SchemaNode& n = g_.nodes[static_cast<size_t>(any_)];
      n.literals = {"true", "false", "null"};
      n.additional = n.items = any_;
    }
    return any_;
  }

  int compile(const ojson& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "a false schema accepts nothing");
      return any();
    }
    if (!s.is_object()) fail(path, "a schema must be an object");
    const int id = add();
    SchemaNode n;  // filled here, stored at the end: compiling children grows g_.nodes
    bool typed = false;
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      const ojson& v = it.value();
      const std::string at = path + "." + k;
      if (k == "type") {
        typed = true;
        n.types = 0;
        if (v.is_string()) n.types = type_bit(v, at);
        else if (v.is_array() && !v.empty())
          for (const auto& t : v) n.types |= type_bit(t, at);
        else fail(at, "'type' must be a type name or a non-empty array of them");
      } else if (k == "properties") {
        if (!v.is_object()) fail(at, "'properties' must be an object");
        if (v.size() > kMaxProps) fail(at, fmt::format("at most {} properties per object", kMaxProps));
        for (auto p = v.begin(); p != v.end(); ++p) {
          const std::string quoted = ojson(p.key()).dump(-1, ' ', false, ojson::error_handler_t::replace);
          n.prop_names.push_back(quoted.substr(1, quoted.size() - 2));
          n.prop_nodes.push_back(compile(p.value(), at + "." + p.key()));
        }
      } else if (k == "additionalProperties") {
        n.additional = v.is_boolean() ? (v.get<bool>() ? any() : -1) : compile(v, at);
      } else if (k == "items") {
        n.items = compile(v, at);
      } else if (k == "enum" || k == "const") {
        const ojson vals = k == "const" ? ojson::array({v}) : v;
        if (!vals.is_array() || vals.empty() || vals.size() > kMaxEnum)
          fail(at, fmt::format("'enum' must be an array of 1 to {} values", kMaxEnum));
        n.literals.clear();
        for (const auto& x : vals) n.literals.push_back(x.dump(-1, ' ', false, ojson::error_handler_t::replace));
        n.enum_only = true;
      } else if (k == "minItems" || k == "maxItems") {
        if (!v.is_number_unsigned() || v.get<uint64_t>() > 0xFFFF) fail(at, fmt::format("'{}' must be an integer 0..65535", k));
        (k == "minItems" ? n.min_items : n.max_items) = static_cast<int>(v.get<uint64_t>());
      } else if (k == "required") {
        // checked below, once the properties are known
      } else if (k != "title" && k != "description" && k != "$schema" && k != "$id" && k != "$comment" &&
                 k != "default" && k != "examples") {
        fail(at, fmt::format("the schema keyword '{}' is not supported (supported: type, properties, required, "
                             "additionalProperties, items, enum, const, minItems, maxItems)", k));
      }
    }
    if (s.contains("required")) {
      const ojson& r = s.at("required");
      if (!r.is_array()) fail(path + ".required", "'required' must be an array of property names");
      for (const auto& name : r) {
        size_t i = 0;
        const std::string want = name.is_string() ? ojson(name).dump() : "";
        while (i < n.prop_names.size() && "\"" + n.prop_names[i] + "\"" != want) ++i;
        if (i == n.prop_names.size())
          fail(path + ".required", fmt::format("'required' names {} which is not in 'properties'", name.dump()));
        n.required |= 1ull << i;
      }
    }
    if (n.min_items > n.max_items) fail(path + ".minItems", "'minItems' is larger than 'maxItems'");
    if (!typed) {  // no "type": what the keywords imply, else anything
      if (!n.prop_names.empty() || s.contains("additionalProperties")) n.types = kObject;
      else if (s.contains("items")) n.types = kArray;
    }
    if (n.types & kObject && !s.contains("additionalProperties")) n.additional = any();
    if (n.types & kArray && n.items < 0) n.items = any();
    if (!n.enum_only) {
      if (n.types & kBoolean) n.literals = {"true", "false"};
      if (n.types & kNull) n.literals.push_back("null");
    }
    g_.nodes[static_cast<size_t>(id)] = std::move(n);
    return id;
  }

 private:
  int add() {
    if (g_.nodes.size() >= kMaxNodes) fail(base_, fmt::format("the schema has more than {} subschemas", kMaxNodes));
    g_.nodes.emplace_back();
    return static_cast<int>(g_.nodes.size() - 1);
  }
  uint8_t type_bit(const ojson& t, const std::string& at) {
    static const std::pair<const char*, uint8_t> names[] = {
        {"object", kObject}, {"array", kArray}, {"string", kString}, {"number", kNumber | kInteger},
        {"integer", kInteger}, {"boolean", kBoolean}, {"null", kNull}};
    if (t.is_string())
      for (const auto& [name, bit] : names)
        if (t.get<std::string>() == name) return bit;
    fail(at, fmt::format("unknown type {} (object, array, string, number, integer, boolean, null)", t.dump()));
  }
  [[noreturn]] static void fail(const std::string& at, const std::string& msg) {
    bad_request(at, fmt::format("{}: {}", at, msg), "invalid_schema");
  }

  JsonGrammar& g_;
  std::string base_;
  int any_ = -1;
};

}  // namespace

namespace {

constexpr int kNever = 1 << 28;  // "no value fits" (an object whose required value cannot be written)

// Bytes of `,"name":` + the shortest value of property i (the comma is dropped for the first).
int prop_bytes(const JsonGrammar& g, const SchemaNode& n, size_t i) {
  return 4 + static_cast<int>(n.prop_names[i].size()) + g.min_bytes[static_cast<size_t>(n.prop_nodes[i])];
}

// What an object still needs once the properties in `seen` are written: the missing required
// ones (each with its comma) and the closing brace.
int object_rest(const JsonGrammar& g, const SchemaNode& n, uint64_t seen) {
  int64_t total = 1;
  for (size_t i = 0; i < n.prop_names.size(); ++i)
    if ((n.required & ~seen) >> i & 1) total += prop_bytes(g, n, i);
  return static_cast<int>(std::min<int64_t>(total, kNever));
}

int array_min(const JsonGrammar& g, const SchemaNode& n, int items) {
  if (items <= 0) return 1;
  return static_cast<int>(std::min<int64_t>(int64_t{items} * (1 + g.min_bytes[static_cast<size_t>(n.items)]), kNever));
}

// min_bytes of every node: a fixed point, since the any-node refers to itself (its own shortest
// value is a number, so it settles at once; a schema is otherwise a tree).
void compute_min_bytes(JsonGrammar& g) {
  g.min_bytes.assign(g.nodes.size(), kNever);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t id = 0; id < g.nodes.size(); ++id) {
      const SchemaNode& n = g.nodes[id];
      int best = kNever;
      for (const std::string& lit : n.literals) best = std::min(best, static_cast<int>(lit.size()));
      if (!n.enum_only) {
        if (n.types & (kNumber | kInteger)) best = std::min(best, 1);
        if (n.types & kString) best = std::min(best, 2);
        if (n.types & kArray) best = std::min(best, 1 + array_min(g, n, n.min_items));  // "[" + items + "]"
        if (n.types & kObject) best = std::min(best, object_rest(g, n, 0) + (n.required ? 0 : 1));
      }
      if (best < g.min_bytes[id]) g.min_bytes[id] = best, changed = true;
    }
  }
}

}  // namespace

std::shared_ptr<const JsonGrammar> JsonGrammar::any_object() {
  auto g = std::make_shared<JsonGrammar>();
  Compiler c(*g, "");
  c.compile(ojson{{"type", "object"}}, "");
  compute_min_bytes(*g);
  return g;
}

std::shared_ptr<const JsonGrammar> JsonGrammar::from_schema(const ojson& schema, const std::string& param) {
  auto g = std::make_shared<JsonGrammar>();
  Compiler c(*g, param);
  c.compile(schema, param);  // the root is node 0
  compute_min_bytes(*g);
  return g;
}

// ---------------------------------------------------------------------------------------------
// The automaton.

JsonGrammarState::JsonGrammarState(const JsonGrammar& g) : g_(&g) { push(kValue, 0); }

void JsonGrammarState::copy_from(const JsonGrammarState& o) {
  g_ = o.g_;
  depth_ = o.depth_;
  std::memcpy(f_.data(), o.f_.data(), static_cast<size_t>(depth_) * sizeof(JsonFrame));
}

bool JsonGrammarState::complete() const {
  if (depth_ == 0) return true;
  if (depth_ > 1) return false;
  const JsonFrame& fr = f_[0];
  return (fr.kind == kNum && num_accepting(fr.sub)) || (fr.kind == kLit && literal_done(g_->nodes[fr.node], fr));
}

bool JsonGrammarState::push(uint8_t kind, uint16_t node) {
  if (depth_ >= kMaxDepth) return false;
  f_[static_cast<size_t>(depth_)] = JsonFrame{};
  f_[static_cast<size_t>(depth_)].kind = kind;
  f_[static_cast<size_t>(depth_)].node = node;
  ++depth_;
  return true;
}

bool JsonGrammarState::whitespace(JsonFrame& fr) { return ++fr.ws <= kMaxWs; }

bool JsonGrammarState::start_value(JsonFrame& fr, uint8_t c) {
  if (is_ws(c)) return whitespace(fr);
  const SchemaNode& n = g_->nodes[fr.node];
  const uint16_t node = fr.node;
  uint64_t alive = 0;
  for (size_t i = 0; i < n.literals.size(); ++i)
    if (static_cast<uint8_t>(n.literals[i][0]) == c) alive |= 1ull << i;
  fr = JsonFrame{};
  fr.node = node;
  if (alive) {
    fr.kind = kLit;
    fr.pos = 1;
    fr.bits = alive;
    return true;
  }
  if (n.enum_only) return false;
  if (c == '{' && (n.types & kObject)) fr.kind = kObj;
  else if (c == '[' && (n.types & kArray)) fr.kind = kArr;
  else if (c == '"' && (n.types & kString)) fr.kind = kStr;
  else if ((c == '-' || is_digit(c)) && (n.types & (kNumber | kInteger))) {
    fr.kind = kNum;
    fr.sub = c == '-' ? 0 : c == '0' ? 1 : 2;
    fr.pos = 1;
  } else {
    return false;
  }
  return true;
}

bool JsonGrammarState::object_byte(JsonFrame& fr, uint8_t c) {
  if (is_ws(c)) return whitespace(fr);
  fr.ws = 0;
  const SchemaNode& n = g_->nodes[fr.node];
  const uint64_t props = all_bits(n.prop_names.size());
  const bool more_keys = n.additional >= 0 || (props & ~fr.bits) != 0;
  const bool may_close = (n.required & ~fr.bits) == 0;
  switch (fr.sub) {
    case 0:    // after '{'
    case 1:    // after ','
      if (c == '"' && more_keys) {
        const uint64_t cand = n.additional >= 0 ? props : props & ~fr.bits;
        const uint16_t node = fr.node;
        if (!push(kKey, node)) return false;
        f_[static_cast<size_t>(depth_ - 1)].bits = cand;
        return true;
      }
      if (c == '}' && fr.sub == 0 && may_close) { --depth_; return true; }
      return false;
    case 2:    // after the key
      if (c != ':') return false;
      fr.sub = 3;
      return push(kValue, fr.child);
    default:   // after a value
      if (c == ',' && more_keys) { fr.sub = 1; return true; }
      if (c == '}' && may_close) { --depth_; return true; }
      return false;
  }
}

bool JsonGrammarState::key_byte(JsonFrame& fr, uint8_t c) {
  const SchemaNode& n = g_->nodes[fr.node];
  if (fr.sub == 0 && fr.utf8 == 0 && c == '"') {  // the key ends: which property is it?
    JsonFrame& obj = f_[static_cast<size_t>(depth_ - 2)];
    int match = -1;
    for (size_t i = 0; i < n.prop_names.size(); ++i)
      if ((fr.bits >> i & 1) && n.prop_names[i].size() == fr.pos) match = static_cast<int>(i);
    if (match >= 0) {
      if (obj.bits >> match & 1) return false;  // a key twice
      obj.bits |= 1ull << match;
      obj.child = static_cast<uint16_t>(n.prop_nodes[static_cast<size_t>(match)]);
    } else if (n.additional >= 0) {
      obj.child = static_cast<uint16_t>(n.additional);
    } else {
      return false;
    }
    obj.sub = 2;
    --depth_;
    return true;
  }
  if (string_byte(fr, c) != 1) return false;
  uint64_t next = 0;
  for (size_t i = 0; i < n.prop_names.size(); ++i)
    if ((fr.bits >> i & 1) && n.prop_names[i].size() > fr.pos && static_cast<uint8_t>(n.prop_names[i][fr.pos]) == c)
      next |= 1ull << i;
  // Once no property can match, the position no longer matters: keeping it fixed keeps the
  // state (the mask cache key) the same for every later byte of a free-form key.
  fr.pos = static_cast<uint16_t>(next && fr.pos < 0xFFFE ? fr.pos + 1 : 0xFFFF);
  fr.bits = next;
  return next != 0 || n.additional >= 0;
}

bool JsonGrammarState::array_byte(JsonFrame& fr, uint8_t c) {
  if (is_ws(c)) return whitespace(fr);
  fr.ws = 0;
  const SchemaNode& n = g_->nodes[fr.node];
  if (fr.sub == 0) {  // after '[': ']' or the first item's first byte
    if (c == ']') {
      if (n.min_items > 0) return false;
      --depth_;
      return true;
    }
    if (n.max_items == 0) return false;
    fr.sub = 1;
    fr.pos = 1;
    if (!push(kValue, static_cast<uint16_t>(n.items))) return false;
    return start_value(f_[static_cast<size_t>(depth_ - 1)], c);
  }
  if (c == ',' && fr.pos < n.max_items) {
    ++fr.pos;
    return push(kValue, static_cast<uint16_t>(n.items));
  }
  if (c == ']' && fr.pos >= n.min_items) { --depth_; return true; }
  return false;
}

bool JsonGrammarState::literal_byte(JsonFrame& fr, uint8_t c) {
  const SchemaNode& n = g_->nodes[fr.node];
  uint64_t next = 0;
  for (size_t i = 0; i < n.literals.size(); ++i)
    if ((fr.bits >> i & 1) && n.literals[i].size() > fr.pos && static_cast<uint8_t>(n.literals[i][fr.pos]) == c)
      next |= 1ull << i;
  if (!next) return false;
  fr.bits = next;
  ++fr.pos;
  return true;
}

bool JsonGrammarState::advance(uint8_t c) {
  // A number or literal ends only when a byte that cannot continue it arrives; that byte then
  // belongs to the enclosing frame, hence the loop.
  while (depth_ > 0) {
    JsonFrame& fr = f_[static_cast<size_t>(depth_ - 1)];
    switch (fr.kind) {
      case kValue: return start_value(fr, c);
      case kObj: return object_byte(fr, c);
      case kArr: return array_byte(fr, c);
      case kKey: return key_byte(fr, c);
      case kStr: {
        const int r = string_byte(fr, c);
        if (r == 2) --depth_;
        return r != 0;
      }
      case kNum: {
        const int r = number_byte(fr, c, !(g_->nodes[fr.node].types & kNumber));
        if (r != 2) return r == 1;
        --depth_;
        continue;
      }
      case kLit:
        if (literal_byte(fr, c)) return true;
        if (!literal_done(g_->nodes[fr.node], fr)) return false;
        --depth_;
        continue;
      default: return false;
    }
  }
  return false;  // nothing may follow the complete value
}

int JsonGrammarState::min_close() const {
  const JsonGrammar& g = *g_;
  int64_t total = 0;
  // Each frame's cost to finish, top first; a frame below continues once the one above is done.
  for (int d = depth_ - 1; d >= 0; --d) {
    const JsonFrame& fr = f_[static_cast<size_t>(d)];
    const SchemaNode& n = g.nodes[fr.node];
    switch (fr.kind) {
      case kValue: total += g.min_bytes[fr.node]; break;
      case kStr:  // owed escape or UTF-8 bytes, then the quote
        total += string_owed(fr) + 1;
        break;
      case kNum: total += num_accepting(fr.sub) ? 0 : 1; break;
      case kLit: {
        int best = kNever;
        for (size_t i = 0; i < n.literals.size(); ++i)
          if (fr.bits >> i & 1) best = std::min(best, static_cast<int>(n.literals[i].size()) - fr.pos);
        total += best;
        break;
      }
      case kKey: {  // the key, its value and the rest of the object below it (frame d-1)
        const JsonFrame& obj = f_[static_cast<size_t>(d - 1)];
        int64_t best = kNever;
        bool exact = false;  // the key as typed is a property name: closing it now picks that one
        for (size_t i = 0; i < n.prop_names.size(); ++i) {
          if (!(fr.bits >> i & 1) || (obj.bits >> i & 1)) continue;
          const int left = static_cast<int>(n.prop_names[i].size()) - fr.pos;
          best = std::min<int64_t>(best, left + 2 + g.min_bytes[static_cast<size_t>(n.prop_nodes[i])] +
                                             object_rest(g, n, obj.bits | 1ull << i));
        }
        for (size_t i = 0; i < n.prop_names.size(); ++i)
          exact |= (fr.bits >> i & 1) && static_cast<int>(n.prop_names[i].size()) == fr.pos;
        if (n.additional >= 0) {
          const int owed = string_owed(fr);
          best = std::min<int64_t>(best, owed + (exact && owed == 0 ? 1 : 0) + 2 +
                                             g.min_bytes[static_cast<size_t>(n.additional)] + object_rest(g, n, obj.bits));
        }
        total += best;
        --d;  // the object's frame is accounted for
        break;
      }
      case kObj: {
        const bool missing = (n.required & ~fr.bits) != 0;
        if (fr.sub == 2) {  // ':' then the value of the key just read
          total += 1 + g.min_bytes[fr.child] + object_rest(g, n, fr.bits);
        } else if (fr.sub == 3 || (fr.sub == 0 && !missing)) {
          total += object_rest(g, n, fr.bits) - (fr.sub == 0 && missing ? 1 : 0);
        } else if (missing) {  // after '{' or ',' with required keys to come: no comma first
          total += object_rest(g, n, fr.bits) - 1;
        } else {  // after ',' and nothing required: some key must still come
          int64_t best = kNever;
          for (size_t i = 0; i < n.prop_names.size(); ++i)
            if (!(fr.bits >> i & 1)) best = std::min<int64_t>(best, prop_bytes(g, n, i) - 1);
          if (n.additional >= 0) best = std::min<int64_t>(best, 3 + g.min_bytes[static_cast<size_t>(n.additional)]);
          total += best + 1;
        }
        break;
      }
      case kArr: {  // after '[': the required items and ']'; after an item: ',' before each more
        const int more = n.min_items - (fr.sub == 0 ? 0 : fr.pos);
        total += array_min(g, n, more) + (fr.sub != 0 && more > 0 ? 1 : 0);
        break;
      }
      default: break;
    }
    if (total >= kNever) return kNever;
  }
  return static_cast<int>(total);
}

bool json_grammar_accepts(const JsonGrammar& g, std::string_view text) {
  JsonGrammarState s(g);
  return s.advance(text) && s.complete();
}

}  // namespace dsv3::server
