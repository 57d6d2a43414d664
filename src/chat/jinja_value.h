// Values of the Jinja2 interpreter. They follow Python's semantics as jinja2 sees them (dicts keep
// insertion order, bool is a number, str() of a float is repr), because chat templates are checked
// against what transformers renders. Containers are shared and immutable after construction, as in
// transformers' ImmutableSandboxedEnvironment; only namespace() objects are mutated (set ns.x).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace dsv3::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, like a Python dict
struct Stmt;

struct Value {
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Macro, Builtin };
  Kind kind = Kind::Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;                 // String; Undefined: the missing name (for messages); Builtin: its name
  std::shared_ptr<List> list;    // List
  std::shared_ptr<Dict> dict;    // Dict, Namespace (shared so `set ns.x` is seen by every holder)
  const Stmt* macro = nullptr;   // Macro
  bool tuple = false;            // List: a Python tuple (only changes how it prints)

  Value() = default;
  static Value undefined(std::string name = {}) { Value v; v.s = std::move(name); return v; }
  static Value none() { Value v; v.kind = Kind::None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Kind::Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Kind::Int; v.i = x; return v; }
  static Value number(double x) { Value v; v.kind = Kind::Float; v.f = x; return v; }
  static Value string(std::string x) { Value v; v.kind = Kind::String; v.s = std::move(x); return v; }
  static Value make_list(List x = {}) {
    Value v; v.kind = Kind::List; v.list = std::make_shared<List>(std::move(x)); return v;
  }
  static Value make_tuple(List x) {
    Value v = make_list(std::move(x)); v.tuple = true; return v;
  }
  static Value make_dict(Dict x = {}) {
    Value v; v.kind = Kind::Dict; v.dict = std::make_shared<Dict>(std::move(x)); return v;
  }
  static Value builtin(std::string name) { Value v; v.kind = Kind::Builtin; v.s = std::move(name); return v; }

  bool is_undefined() const { return kind == Kind::Undefined; }
  bool is_none() const { return kind == Kind::None; }
  bool is_string() const { return kind == Kind::String; }
  bool is_list() const { return kind == Kind::List; }
  bool is_mapping() const { return kind == Kind::Dict || kind == Kind::Namespace; }
  bool is_number() const { return kind == Kind::Bool || kind == Kind::Int || kind == Kind::Float; }

  // Dict/namespace lookup; nullptr when absent.
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);  // Dict/namespace: replace or append
};

// Python semantics.
bool truthy(const Value& v);
std::string to_str(const Value& v);   // str(v); Undefined -> ""
std::string repr(const Value& v);     // repr(v)
std::string type_name(const Value& v);  // "dict object", "str object", ... as in jinja2 messages
bool equals(const Value& a, const Value& b);
double as_double(const Value& v);  // numbers only
// json.dumps(v, ensure_ascii=False, indent, separators=None, sort_keys) as transformers' tojson.
std::string to_json(const Value& v, int indent, bool sort_keys);
std::string py_float_repr(double d);

// UTF-8 <-> code points, for Python's code-point string indexing, slicing and length.
std::u32string utf8_decode(const std::string& s);
std::string utf8_encode(const std::u32string& s);
void utf8_append(std::string& out, char32_t c);

// Converts nlohmann::json or nlohmann::ordered_json (object order is kept as the container has it).
template <typename J>
Value from_json(const J& j) {
  if (j.is_null()) return Value::none();
  if (j.is_boolean()) return Value::boolean(j.template get<bool>());
  if (j.is_number_integer()) return Value::integer(j.template get<int64_t>());
  if (j.is_number()) return Value::number(j.template get<double>());
  if (j.is_string()) return Value::string(j.template get<std::string>());
  if (j.is_array()) {
    List l;
    l.reserve(j.size());
    for (const auto& e : j) l.push_back(from_json(e));
    return Value::make_list(std::move(l));
  }
  if (j.is_object()) {
    Dict d;
    d.reserve(j.size());
    for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), from_json(it.value()));
    return Value::make_dict(std::move(d));
  }
  return Value::none();  // binary / discarded: not produced by JSON text
}

}  // namespace dsv3::jinja
