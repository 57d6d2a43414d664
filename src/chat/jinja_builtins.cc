// Filters, tests and methods with the behaviour of jinja2 3.1 / Python 3 that chat templates rely on.
#include "chat/jinja_builtins.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <set>

#include "core/error.h"

namespace dsv3::jinja {

const Value* CallArgs::get(size_t index, const char* name) const {
  if (index < pos.size()) return &pos[index];
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

namespace {

[[noreturn]] void undefined_error(const Value& v) { fail("{}", v.s.empty() ? std::string("undefined value") : v.s); }

int64_t as_int(const Value& v, const char* what) {
  if (v.kind == Value::Kind::Int) return v.i;
  if (v.kind == Value::Kind::Bool) return v.b;
  fail("{} must be an integer, got {}", what, type_name(v));
}

const std::string& as_string(const Value& v, const char* what) {
  if (!v.is_string()) {
    if (v.is_undefined()) undefined_error(v);
    fail("{} must be a string, got {}", what, type_name(v));
  }
  return v.s;
}

bool is_py_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto in_set = [&](char c) {
    return chars && !chars->is_none() ? as_string(*chars, "strip chars").find(c) != std::string::npos
                                      : is_py_space(c);
  };
  size_t b = 0, e = s.size();
  if (left)
    while (b < e && in_set(s[b])) ++b;
  if (right)
    while (e > b && in_set(s[e - 1])) --e;
  return s.substr(b, e - b);
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` between every character
    std::u32string cps = utf8_decode(s);
    int64_t n = 0;
    for (char32_t c : cps) {
      if (count < 0 || n++ < count) out += to;
      utf8_append(out, c);
    }
    if (count < 0 || n < count) out += to;
    return out;
  }
  size_t p = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    size_t q = s.find(from, p);
    if (q == std::string::npos) break;
    out.append(s, p, q - p);
    out += to;
    p = q + from.size();
    ++n;
  }
  out.append(s, p);
  return out;
}

Value split(const std::string& s, const Value* sep, int64_t maxsplit) {
  List out;
  if (!sep || sep->is_none()) {
    size_t k = 0, n = s.size();
    while (true) {
      while (k < n && is_py_space(s[k])) ++k;
      if (k >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = n;
        while (e > k && is_py_space(s[e - 1])) --e;
        out.push_back(Value::string(s.substr(k, e - k)));
        break;
      }
      size_t b = k;
      while (k < n && !is_py_space(s[k])) ++k;
      out.push_back(Value::string(s.substr(b, k - b)));
    }
    return Value::make_list(std::move(out));
  }
  const std::string& d = as_string(*sep, "split separator");
  if (d.empty()) fail("split: empty separator");
  size_t p = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t q = s.find(d, p);
    if (q == std::string::npos) break;
    out.push_back(Value::string(s.substr(p, q - p)));
    p = q + d.size();
  }
  out.push_back(Value::string(s.substr(p)));
  return Value::make_list(std::move(out));
}

std::string ascii_case(std::string s, bool upper) {
  for (char& c : s) c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string title_case(const std::string& s) {
  std::string out = s;
  bool prev_alpha = false;
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    bool alpha = std::isalpha(u);
    c = static_cast<char>(alpha ? (prev_alpha ? std::tolower(u) : std::toupper(u)) : u);
    prev_alpha = alpha || (u >= 0x80);
  }
  return out;
}

// Attribute lookup as jinja2's environment.getitem for dotted paths ("a.b", "0").
Value attr_path(const Value& v, const std::string& path) {
  Value cur = v;
  size_t p = 0;
  while (true) {
    size_t q = path.find('.', p);
    std::string part = path.substr(p, q == std::string::npos ? std::string::npos : q - p);
    if (cur.is_undefined()) return cur;
    if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && cur.is_list())
      cur = get_item(cur, Value::integer(std::stoll(part)));
    else
      cur = get_item(cur, Value::string(part));
    if (q == std::string::npos) return cur;
    p = q + 1;
  }
}

size_t py_len(const Value& v) {
  switch (v.kind) {
    case Value::Kind::String: return utf8_decode(v.s).size();
    case Value::Kind::List: return v.list->size();
    case Value::Kind::Dict:
    case Value::Kind::Namespace: return v.dict->size();
    case Value::Kind::Undefined: return 0;
    default: fail("object of type '{}' has no len()", type_name(v));
  }
}

// select/reject/selectattr/rejectattr share the test-argument convention.
Value select_items(const Value& seq, const CallArgs& a, bool by_attr, bool keep) {
  List out;
  size_t next = 0;
  std::string attr;
  if (by_attr) {
    const Value* at = a.get(0, "attribute");
    if (!at) fail("selectattr/rejectattr: missing attribute name");
    attr = as_string(*at, "attribute");
    next = 1;
  }
  const Value* test = next < a.pos.size() ? &a.pos[next] : nullptr;
  CallArgs targs;
  for (size_t k = next + 1; k < a.pos.size(); ++k) targs.pos.push_back(a.pos[k]);
  for (const Value& item : iterate(seq)) {
    Value v = by_attr ? attr_path(item, attr) : item;
    bool ok = test ? call_test(as_string(*test, "test name"), v, targs) : truthy(v);
    if (ok == keep) out.push_back(item);
  }
  return Value::make_list(std::move(out));
}

Value sorted(const Value& seq, const CallArgs& a) {
  std::vector<Value> items = iterate(seq);
  const Value* rev = a.get(0, "reverse");
  const Value* cs = a.get(1, "case_sensitive");
  const Value* attr = a.get(2, "attribute");
  bool case_sensitive = cs && truthy(*cs);
  auto key = [&](const Value& v) {
    Value k = attr ? attr_path(v, as_string(*attr, "attribute")) : v;
    if (!case_sensitive && k.is_string()) k.s = ascii_case(k.s, false);
    return k;
  };
  std::stable_sort(items.begin(), items.end(),
                   [&](const Value& x, const Value& y) { return compare(key(x), key(y), "<") < 0; });
  if (rev && truthy(*rev)) std::reverse(items.begin(), items.end());
  return Value::make_list(std::move(items));
}

const std::set<std::string>& filter_names() {
  static const std::set<std::string> names = {
      "abs", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float", "indent",
      "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
      "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string",
      "sum", "title", "tojson", "trim", "unique", "upper", "wordcount"};
  return names;
}

const std::set<std::string>& test_names() {
  static const std::set<std::string> names = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "even", "false", "filter",
      "float", "ge", "gt", ">", ">=", "in", "integer", "iterable", "le", "lower", "lt", "<", "<=",
      "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "test", "true",
      "undefined", "upper"};
  return names;
}

}  // namespace

bool is_known_filter(const std::string& name) { return filter_names().count(name) > 0; }
bool is_known_test(const std::string& name) { return test_names().count(name) > 0; }

std::vector<Value> iterate(const Value& v) {
  switch (v.kind) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return *v.list;
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      for (const auto& kv : *v.dict) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> chars;
      for (char32_t c : utf8_decode(v.s)) {
        std::string s;
        utf8_append(s, c);
        chars.push_back(Value::string(std::move(s)));
      }
      return chars;
    }
    default: fail("'{}' is not iterable", type_name(v));
  }
}

// jinja2's Undefined for a missing attribute/item; its message is raised if the value is used.
static Value no_attribute(const Value& obj, const std::string& name) {
  return Value::undefined(fmt::format("'{}' has no attribute '{}'", type_name(obj), name));
}

Value get_item(const Value& obj, const Value& key) {
  switch (obj.kind) {
    case Value::Kind::Dict:
    case Value::Kind::Namespace:
      if (key.is_string()) {
        if (const Value* v = obj.find(key.s)) return *v;
        return no_attribute(obj, key.s);
      }
      break;
    case Value::Kind::List:
      if (key.kind == Value::Kind::Int || key.kind == Value::Kind::Bool) {
        int64_t n = static_cast<int64_t>(obj.list->size()), k = key.kind == Value::Kind::Bool ? key.b : key.i;
        if (k < 0) k += n;
        if (k >= 0 && k < n) return (*obj.list)[k];
        return Value::undefined("list object has no element " + to_str(key));
      }
      break;
    case Value::Kind::String:
      if (key.kind == Value::Kind::Int) {
        std::u32string cps = utf8_decode(obj.s);
        int64_t n = static_cast<int64_t>(cps.size()), k = key.i;
        if (k < 0) k += n;
        if (k >= 0 && k < n) {
          std::string s;
          utf8_append(s, cps[k]);
          return Value::string(std::move(s));
        }
        return Value::undefined("str object has no element " + to_str(key));
      }
      break;
    case Value::Kind::Undefined: undefined_error(obj);
    default: break;
  }
  return no_attribute(obj, to_str(key));
}

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) undefined_error(obj);
  if (obj.is_mapping()) return get_item(obj, Value::string(name));
  return no_attribute(obj, name);
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Kind::String:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not {}", type_name(item));
      return container.s.find(item.s) != std::string::npos;
    case Value::Kind::List:
      for (const auto& v : *container.list)
        if (equals(v, item)) return true;
      return false;
    case Value::Kind::Dict:
    case Value::Kind::Namespace: return item.is_string() && container.find(item.s) != nullptr;
    case Value::Kind::Undefined: return false;
    default: fail("argument of type '{}' is not iterable", type_name(container));
  }
}

int compare(const Value& a, const Value& b, const char* op) {
  if (a.is_number() && b.is_number()) {
    double x = as_double(a), y = as_double(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.is_list() && b.is_list()) {
    for (size_t k = 0; k < std::min(a.list->size(), b.list->size()); ++k) {
      if (equals((*a.list)[k], (*b.list)[k])) continue;
      return compare((*a.list)[k], (*b.list)[k], op);
    }
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  fail("'{}' not supported between instances of '{}' and '{}'", op, type_name(a), type_name(b));
}

Value call_filter(const std::string& name, const Value& v, const CallArgs& a) {
  auto str_in = [&]() -> std::string {
    if (v.is_string()) return v.s;
    return to_str(v);
  };
  if (name == "trim") return Value::string(strip(str_in(), a.get(0, "chars"), true, true));
  if (name == "length" || name == "count") return Value::integer(static_cast<int64_t>(py_len(v)));
  if (name == "upper") return Value::string(ascii_case(str_in(), true));
  if (name == "lower") return Value::string(ascii_case(str_in(), false));
  if (name == "title") return Value::string(title_case(str_in()));
  if (name == "capitalize") {
    std::string s = ascii_case(str_in(), false);
    if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
    return Value::string(s);
  }
  if (name == "safe" || name == "e" || name == "escape") return v;  // autoescape is off in transformers
  if (name == "string") return Value::string(str_in());
  if (name == "tojson") {
    const Value* indent = a.get(0, "indent");
    const Value* sort = nullptr;
    for (const auto& [k, x] : a.kw)
      if (k == "sort_keys") sort = &x;
      else if (k != "indent" && k != "ensure_ascii") fail("tojson: unsupported argument '{}'", k);
    int ind = indent && !indent->is_none() ? static_cast<int>(as_int(*indent, "tojson indent")) : -1;
    return Value::string(to_json(v, ind, sort && truthy(*sort)));
  }
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "default" || name == "d") {
    const Value* def = a.get(0, "default_value");
    const Value* boolean = a.get(1, "boolean");
    bool use_default = v.is_undefined() || (boolean && truthy(*boolean) && !truthy(v));
    if (use_default) return def ? *def : Value::string("");
    return v;
  }
  if (name == "join") {
    const Value* sep = a.get(0, "d");
    const Value* attr = a.get(1, "attribute");
    std::string out, s = sep ? to_str(*sep) : "";
    bool first = true;
    for (const Value& item : iterate(v)) {
      if (!first) out += s;
      first = false;
      out += to_str(attr ? attr_path(item, to_str(*attr)) : item);
    }
    return Value::string(std::move(out));
  }
  if (name == "replace") {
    const Value* from = a.get(0, "old");
    const Value* to = a.get(1, "new");
    const Value* count = a.get(2, "count");
    if (!from || !to) fail("replace: expects old and new strings");
    return Value::string(replace_all(str_in(), to_str(*from), to_str(*to),
                                     count && !count->is_none() ? as_int(*count, "replace count") : -1));
  }
  if (name == "int") {
    const Value* def = a.get(0, "default");
    if (v.kind == Value::Kind::Int) return v;
    if (v.kind == Value::Kind::Bool) return Value::integer(v.b);
    if (v.kind == Value::Kind::Float) return Value::integer(static_cast<int64_t>(v.f));
    if (v.is_string()) {
      try {
        size_t used = 0;
        std::string t = strip(v.s, nullptr, true, true);
        int64_t x = std::stoll(t, &used);
        if (used == t.size()) return Value::integer(x);
        double d = std::stod(t, &used);
        if (used == t.size()) return Value::integer(static_cast<int64_t>(d));
      } catch (const std::exception&) {
      }
    }
    return def ? *def : Value::integer(0);
  }
  if (name == "float") {
    const Value* def = a.get(0, "default");
    if (v.is_number()) return Value::number(as_double(v));
    if (v.is_string()) {
      try {
        size_t used = 0;
        std::string t = strip(v.s, nullptr, true, true);
        double d = std::stod(t, &used);
        if (used == t.size()) return Value::number(d);
      } catch (const std::exception&) {
      }
    }
    return def ? *def : Value::number(0);
  }
  if (name == "abs") {
    if (v.kind == Value::Kind::Float) return Value::number(std::abs(v.f));
    return Value::integer(std::abs(as_int(v, "abs argument")));
  }
  if (name == "round") {
    const Value* prec = a.get(0, "precision");
    int64_t p = prec ? as_int(*prec, "round precision") : 0;
    double scale = std::pow(10.0, static_cast<double>(p));
    return Value::number(std::nearbyint(as_double(v) * scale) / scale);
  }
  if (name == "list") return Value::make_list(iterate(v));
  if (name == "items" || name == "dictsort") {
    if (v.is_undefined()) return Value::make_list();
    if (!v.is_mapping()) fail("{}: expected a mapping, got {}", name, type_name(v));
    List out;
    for (const auto& [k, x] : *v.dict) out.push_back(Value::make_tuple({Value::string(k), x}));
    if (name == "dictsort")
      std::stable_sort(out.begin(), out.end(), [](const Value& p, const Value& q) {
        return ascii_case((*p.list)[0].s, false) < ascii_case((*q.list)[0].s, false);
      });
    return Value::make_list(std::move(out));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string cps = utf8_decode(v.s);
      std::reverse(cps.begin(), cps.end());
      return Value::string(utf8_encode(cps));
    }
    std::vector<Value> items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::make_list(std::move(items));
  }
  if (name == "select" || name == "reject") return select_items(v, a, false, name == "select");
  if (name == "selectattr" || name == "rejectattr") return select_items(v, a, true, name == "selectattr");
  if (name == "map") {
    List out;
    const Value* attr = nullptr;
    const Value* def = nullptr;
    for (const auto& [k, x] : a.kw)
      if (k == "attribute") attr = &x;
      else if (k == "default") def = &x;
    if (attr) {
      for (const Value& item : iterate(v)) {
        Value r = attr_path(item, to_str(*attr));
        out.push_back(r.is_undefined() && def ? *def : r);
      }
    } else {
      if (a.pos.empty()) fail("map: expects a filter name or attribute=");
      const std::string& fname = as_string(a.pos[0], "map filter name");
      if (!is_known_filter(fname)) fail("map: no filter named '{}'", fname);
      CallArgs rest;
      rest.pos.assign(a.pos.begin() + 1, a.pos.end());
      rest.kw = a.kw;
      for (const Value& item : iterate(v)) out.push_back(call_filter(fname, item, rest));
    }
    return Value::make_list(std::move(out));
  }
  if (name == "sort") return sorted(v, a);
  if (name == "unique") {
    List out;
    for (const Value& item : iterate(v)) {
      bool seen = false;
      for (const Value& o : out) seen = seen || equals(o, item);
      if (!seen) out.push_back(item);
    }
    return Value::make_list(std::move(out));
  }
  if (name == "min" || name == "max") {
    std::vector<Value> items = iterate(v);
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    Value best = items[0];
    for (const Value& x : items) {
      int c = compare(x, best, "<");
      if (name == "min" ? c < 0 : c > 0) best = x;
    }
    return best;
  }
  if (name == "sum") {
    const Value* attr = a.get(0, "attribute");
    const Value* start = a.get(1, "start");
    Value acc = start ? *start : Value::integer(0);
    for (const Value& item : iterate(v)) {
      Value x = attr ? attr_path(item, to_str(*attr)) : item;
      if (!x.is_number() || !acc.is_number()) fail("sum: unsupported operand type {}", type_name(x));
      if (acc.kind == Value::Kind::Float || x.kind == Value::Kind::Float) acc = Value::number(as_double(acc) + as_double(x));
      else acc = Value::integer(as_int(acc, "sum") + as_int(x, "sum"));
    }
    return acc;
  }
  if (name == "wordcount") return Value::integer(static_cast<int64_t>(split(str_in(), nullptr, -1).list->size()));
  if (name == "indent") {
    const Value* width = a.get(0, "width");
    const Value* first = a.get(1, "first");
    const Value* blank = a.get(2, "blank");
    std::string pad = width ? (width->is_string() ? width->s : std::string(as_int(*width, "indent width"), ' '))
                            : std::string(4, ' ');
    // jinja2's do_indent: splitlines(s + "\n"), the first line only with first=True, blank lines
    // only with blank=True.
    std::string s = str_in() + "\n", out;
    std::vector<std::string> lines;
    for (size_t p = 0, q; (q = s.find('\n', p)) != std::string::npos; p = q + 1) lines.push_back(s.substr(p, q - p));
    for (size_t k = 0; k < lines.size(); ++k) {
      if (k > 0) out += '\n';
      if (k > 0 && (!lines[k].empty() || (blank && truthy(*blank)))) out += pad;
      out += lines[k];
    }
    if (first && truthy(*first)) out = pad + out;
    return Value::string(std::move(out));
  }
  fail("unsupported construct: filter '{}'", name);
}

bool call_test(const std::string& name, const Value& v, const CallArgs& a) {
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.kind == K::Dict;
  if (name == "iterable") return v.is_string() || v.is_list() || v.kind == K::Dict || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.kind == K::Dict || v.is_undefined();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind == K::Int;
  if (name == "float") return v.kind == K::Float;
  if (name == "boolean") return v.kind == K::Bool;
  if (name == "true") return v.kind == K::Bool && v.b;
  if (name == "false") return v.kind == K::Bool && !v.b;
  if (name == "callable") return v.kind == K::Macro || v.kind == K::Builtin;
  if (name == "lower") return v.is_string() && ascii_case(v.s, false) == v.s;
  if (name == "upper") return v.is_string() && ascii_case(v.s, true) == v.s;
  if (name == "even" || name == "odd") {
    int64_t x = as_int(v, "even/odd argument");
    return (x % 2 == 0) == (name == "even");
  }
  const Value* other = a.get(0, "other");
  if (name == "filter") return v.is_string() && is_known_filter(v.s);
  if (name == "test") return v.is_string() && is_known_test(v.s);
  if (!other) fail("test '{}' needs an argument", name);
  if (name == "divisibleby") {
    int64_t d = as_int(*other, "divisibleby argument");
    if (d == 0) fail("divisibleby: division by zero");
    return as_int(v, "divisibleby value") % d == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, *other);
  if (name == "ne" || name == "!=") return !equals(v, *other);
  if (name == "sameas") {
    if (v.kind != other->kind) return false;
    if (v.is_none() || v.kind == K::Bool) return equals(v, *other);
    if (v.is_list()) return v.list == other->list;
    if (v.is_mapping()) return v.dict == other->dict;
    return false;
  }
  if (name == "in") return contains(*other, v);
  if (name == "lt" || name == "<") return compare(v, *other, "<") < 0;
  if (name == "le" || name == "<=") return compare(v, *other, "<=") <= 0;
  if (name == "gt" || name == ">") return compare(v, *other, ">") > 0;
  if (name == "ge" || name == ">=") return compare(v, *other, ">=") >= 0;
  fail("unsupported construct: test '{}'", name);
}

Value call_method(const Value& obj, const std::string& name, const CallArgs& a, bool* found) {
  *found = true;
  if (obj.is_string()) {
    const std::string& s = obj.s;
    if (name == "startswith" || name == "endswith") {
      const Value* x = a.get(0, "prefix");
      if (!x) fail("{}() takes at least 1 argument", name);
      std::vector<Value> options = x->is_list() ? *x->list : std::vector<Value>{*x};
      for (const Value& o : options) {
        const std::string& p = as_string(o, name.c_str());
        if (p.size() > s.size()) continue;
        if (name == "startswith" ? s.compare(0, p.size(), p) == 0 : s.compare(s.size() - p.size(), p.size(), p) == 0)
          return Value::boolean(true);
      }
      return Value::boolean(false);
    }
    if (name == "strip") return Value::string(strip(s, a.get(0, "chars"), true, true));
    if (name == "lstrip") return Value::string(strip(s, a.get(0, "chars"), true, false));
    if (name == "rstrip") return Value::string(strip(s, a.get(0, "chars"), false, true));
    if (name == "split") {
      const Value* maxsplit = a.get(1, "maxsplit");
      return split(s, a.get(0, "sep"), maxsplit ? as_int(*maxsplit, "maxsplit") : -1);
    }
    if (name == "rsplit" && a.get(1, "maxsplit") == nullptr) return split(s, a.get(0, "sep"), -1);
    if (name == "replace") {
      const Value* from = a.get(0, "old");
      const Value* to = a.get(1, "new");
      const Value* count = a.get(2, "count");
      if (!from || !to) fail("replace() takes at least 2 arguments");
      return Value::string(replace_all(s, as_string(*from, "replace"), as_string(*to, "replace"),
                                       count ? as_int(*count, "replace count") : -1));
    }
    if (name == "lower") return Value::string(ascii_case(s, false));
    if (name == "upper") return Value::string(ascii_case(s, true));
    if (name == "title") return Value::string(title_case(s));
    if (name == "capitalize") return call_filter("capitalize", obj, a);
    if (name == "find") {
      const Value* x = a.get(0, "sub");
      if (!x) fail("find() takes at least 1 argument");
      size_t p = s.find(as_string(*x, "find"));
      return Value::integer(p == std::string::npos ? -1 : static_cast<int64_t>(utf8_decode(s.substr(0, p)).size()));
    }
    if (name == "count") {
      const Value* x = a.get(0, "sub");
      if (!x) fail("count() takes at least 1 argument");
      const std::string& sub = as_string(*x, "count");
      if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_decode(s).size() + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value::integer(n);
    }
    if (name == "join") {
      const Value* x = a.get(0, "iterable");
      if (!x) fail("join() takes exactly one argument");
      std::string out;
      bool first = true;
      for (const Value& item : iterate(*x)) {
        if (!first) out += s;
        first = false;
        out += as_string(item, "join item");
      }
      return Value::string(std::move(out));
    }
    if (name == "isdigit" || name == "isspace" || name == "isalpha") {
      bool ok = !s.empty();
      for (unsigned char c : s)
        ok = ok && (name == "isdigit" ? std::isdigit(c) : name == "isspace" ? is_py_space(c) : std::isalpha(c));
      return Value::boolean(ok);
    }
  } else if (obj.kind == Value::Kind::Dict) {
    if (name == "get") {
      const Value* key = a.get(0, "key");
      const Value* def = a.get(1, "default");
      if (!key) fail("get() takes at least 1 argument");
      if (key->is_string())
        if (const Value* v = obj.find(key->s)) return *v;
      return def ? *def : Value::none();
    }
    if (name == "items") return call_filter("items", obj, {});
    if (name == "keys") return Value::make_list(iterate(obj));
    if (name == "values") {
      List out;
      for (const auto& kv : *obj.dict) out.push_back(kv.second);
      return Value::make_list(std::move(out));
    }
  } else if (obj.is_list()) {
    if (name == "index") {
      const Value* x = a.get(0, "value");
      for (size_t k = 0; x && k < obj.list->size(); ++k)
        if (equals((*obj.list)[k], *x)) return Value::integer(static_cast<int64_t>(k));
      fail("list.index(x): x not in list");
    }
    if (name == "count") {
      const Value* x = a.get(0, "value");
      int64_t n = 0;
      for (const Value& e : *obj.list) n += x && equals(e, *x);
      return Value::integer(n);
    }
    if (name == "append" || name == "pop" || name == "extend" || name == "insert" || name == "remove")
      fail("unsafe method '{}' of list (transformers renders in an immutable sandbox)", name);
  }
  *found = false;
  return {};
}

const std::vector<std::string>& global_names() {
  static const std::vector<std::string> names = {"namespace", "range", "dict", "raise_exception", "strftime_now"};
  return names;
}

Value call_global(const std::string& name, const CallArgs& a) {
  if (name == "namespace" || name == "dict") {
    Value ns = Value::make_dict();
    if (name == "namespace") ns.kind = Value::Kind::Namespace;
    for (const Value& p : a.pos) {  // namespace(mapping) copies the mapping
      if (!p.is_mapping()) fail("{}() positional argument must be a mapping", name);
      for (const auto& [k, v] : *p.dict) ns.set(k, v);
    }
    for (const auto& [k, v] : a.kw) ns.set(k, v);
    return ns;
  }
  if (name == "range") {
    if (a.pos.empty() || a.pos.size() > 3) fail("range expected 1 to 3 arguments");
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) {
      stop = as_int(a.pos[0], "range argument");
    } else {
      start = as_int(a.pos[0], "range argument");
      stop = as_int(a.pos[1], "range argument");
      if (a.pos.size() == 3) step = as_int(a.pos[2], "range argument");
    }
    if (step == 0) fail("range() arg 3 must not be zero");
    List out;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      out.push_back(Value::integer(k));
      if (out.size() > 1000000) fail("range too large");
    }
    return Value::make_list(std::move(out));
  }
  if (name == "strftime_now") {
    const Value* f = a.get(0, "format");
    if (!f) fail("strftime_now() takes 1 argument");
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    char buf[256];
    size_t n = std::strftime(buf, sizeof(buf), as_string(*f, "strftime_now format").c_str(), &tm);
    return Value::string(std::string(buf, n));
  }
  fail("unsupported construct: function '{}'", name);
}

}  // namespace dsv3::jinja
