// Filters, tests, global functions and str/dict methods of the interpreter (internal).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace dsv3::jinja {

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  // The argument at position `index` or named `name` (Python's binding), or nullptr.
  const Value* get(size_t index, const char* name) const;
};

bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);
Value call_filter(const std::string& name, const Value& v, const CallArgs& a);
bool call_test(const std::string& name, const Value& v, const CallArgs& a);
// Methods of str, dict and list values; *found is false when `obj` has no such method.
Value call_method(const Value& obj, const std::string& name, const CallArgs& a, bool* found);
// Global functions: namespace, range, dict, raise_exception, strftime_now.
Value call_global(const std::string& name, const CallArgs& a);
const std::vector<std::string>& global_names();

// Python operators shared by the evaluator and the filters.
Value get_item(const Value& obj, const Value& key);      // obj[key] with jinja2's fallbacks
Value get_attr(const Value& obj, const std::string& name);  // obj.name with jinja2's fallbacks
bool contains(const Value& container, const Value& item);  // item in container
int compare(const Value& a, const Value& b, const char* op);  // <0, 0, >0; fails on unorderable types
std::vector<Value> iterate(const Value& v);                  // for-loop items

}  // namespace dsv3::jinja
