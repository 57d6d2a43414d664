// Tree-walking evaluator. Scoping follows jinja2: a for loop body and a macro body get their own
// frame, so `set` inside them does not leak out (templates use namespace() for that); if-blocks
// share the enclosing frame.
#include <algorithm>
#include <cmath>
#include <optional>

#include "chat/jinja.h"
#include "chat/jinja_ast.h"
#include "chat/jinja_builtins.h"
#include "core/error.h"

namespace dsv3::jinja {

namespace {

enum class Flow { Normal, Break, Continue };
using Frame = std::vector<std::pair<std::string, Value>>;

[[noreturn]] void fail_undefined(const Value& v) {
  fail("{}", v.s.empty() ? std::string("undefined value") : v.s);
}

class Renderer {
 public:
  Renderer(const Program& prog, const Dict& vars) : prog_(prog) {
    Frame builtins;
    for (const auto& n : global_names()) builtins.emplace_back(n, Value::builtin(n));
    frames_.push_back(std::move(builtins));
    frames_.push_back(vars);
    frames_.emplace_back();  // the template's own top-level assignments
  }

  void run(std::string& out) { exec_body(prog_.body, out); }

 private:
  static constexpr size_t kGlobalFrames = 3;

  // Errors from builtins carry no position; add the node's.
  [[noreturn]] void rethrow(const Error& e, size_t pos) {
    std::string msg = e.what();
    if (msg.rfind("chat template:", 0) == 0) throw e;
    fail("chat template: {}: {}", position(prog_.source, pos), msg);
  }

  const Value* lookup(const std::string& name) const {
    for (size_t f = frames_.size(); f-- > floor_;)
      for (const auto& [k, v] : frames_[f])
        if (k == name) return &v;
    for (size_t f = std::min(kGlobalFrames, floor_); f-- > 0;)
      for (const auto& [k, v] : frames_[f])
        if (k == name) return &v;
    return nullptr;
  }

  void assign(const std::string& name, Value v) {
    Frame& top = frames_.back();
    for (auto& [k, old] : top)
      if (k == name) {
        old = std::move(v);
        return;
      }
    top.emplace_back(name, std::move(v));
  }

  void assign_targets(const std::vector<std::string>& targets, const Value& v, size_t pos) {
    if (targets.size() == 1) {
      assign(targets[0], v);
      return;
    }
    std::vector<Value> items = iterate(v);
    if (items.size() != targets.size())
      fail("chat template: {}: cannot unpack {} values into {} names", position(prog_.source, pos), items.size(),
           targets.size());
    for (size_t k = 0; k < targets.size(); ++k) assign(targets[k], items[k]);
  }

  Flow exec_body(const Body& body, std::string& out) {
    for (const auto& s : body) {
      Flow f = exec(*s, out);
      if (f != Flow::Normal) return f;
    }
    return Flow::Normal;
  }

  Flow exec(const Stmt& s, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::Text: out += s.text; return Flow::Normal;
      case Stmt::Kind::Output: {
        Value v = eval(*s.expr);
        if (v.kind == Value::Kind::String) out += v.s;
        else out += to_str(v);
        return Flow::Normal;
      }
      case Stmt::Kind::If:
        for (const auto& [cond, body] : s.branches)
          if (truthy(eval(*cond))) return exec_body(body, out);
        return exec_body(s.else_body, out);
      case Stmt::Kind::For: return exec_for(s, out);
      case Stmt::Kind::Set: {
        Value v = eval(*s.expr);
        if (!s.attr.empty()) {
          const Value* ns = lookup(s.text);
          if (!ns || ns->kind != Value::Kind::Namespace)
            fail("chat template: {}: cannot assign attribute on non-namespace object '{}'",
                 position(prog_.source, s.pos), s.text);
          const_cast<Value*>(ns)->set(s.attr, std::move(v));  // namespaces are the one mutable value
        } else {
          assign_targets(s.targets, v, s.pos);
        }
        return Flow::Normal;
      }
      case Stmt::Kind::SetBlock: {
        std::string text;
        exec_body(s.body, text);
        assign(s.text, Value::string(std::move(text)));
        return Flow::Normal;
      }
      case Stmt::Kind::Macro: {
        Value m;
        m.kind = Value::Kind::Macro;
        m.macro = &s;
        assign(s.text, m);
        return Flow::Normal;
      }
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::Scope: return exec_body(s.body, out);
    }
    return Flow::Normal;
  }

  Flow exec_for(const Stmt& s, std::string& out) {
    Value seq = eval(*s.expr);
    std::vector<Value> items;
    try {
      items = iterate(seq);
    } catch (const Error& e) {
      rethrow(e, s.expr->pos);
    }
    // jinja2 gives every iteration a fresh scope: a `set` in one iteration is gone in the next.
    if (s.cond) {  // `for x in xs if cond`: filtered before loop.index/length are computed
      std::vector<Value> kept;
      for (auto& it : items) {
        frames_.emplace_back();
        assign_targets(s.targets, it, s.pos);
        bool keep = truthy(eval(*s.cond));
        frames_.pop_back();
        if (keep) kept.push_back(std::move(it));
      }
      items = std::move(kept);
    }
    size_t n = items.size();
    for (size_t k = 0; k < n; ++k) {
      frames_.emplace_back();
      assign_targets(s.targets, items[k], s.pos);
      Dict loop = {{"index", Value::integer(k + 1)},
                   {"index0", Value::integer(k)},
                   {"revindex", Value::integer(n - k)},
                   {"revindex0", Value::integer(n - k - 1)},
                   {"first", Value::boolean(k == 0)},
                   {"last", Value::boolean(k + 1 == n)},
                   {"length", Value::integer(n)},
                   {"depth", Value::integer(1)},
                   {"depth0", Value::integer(0)},
                   {"previtem", k > 0 ? items[k - 1] : Value::undefined("'loop.previtem' is undefined")},
                   {"nextitem", k + 1 < n ? items[k + 1] : Value::undefined("'loop.nextitem' is undefined")}};
      assign("loop", Value::make_dict(std::move(loop)));
      Flow f = exec_body(s.body, out);
      frames_.pop_back();
      if (f == Flow::Break) break;
    }
    if (n == 0) exec_body(s.else_body, out);
    return Flow::Normal;
  }

  CallArgs eval_args(const Expr& e) {
    CallArgs a;
    a.pos.reserve(e.args.size());
    for (const auto& x : e.args) a.pos.push_back(eval(*x));
    for (size_t k = 0; k < e.kwargs.size(); ++k) a.kw.emplace_back(e.keys[k], eval(*e.kwargs[k]));
    return a;
  }

  Value call_macro(const Stmt& m, const CallArgs& a, size_t pos) {
    if (a.pos.size() > m.targets.size())
      fail("chat template: {}: macro '{}' takes at most {} arguments", position(prog_.source, pos), m.text,
           m.targets.size());
    Frame args;
    for (size_t k = 0; k < m.targets.size(); ++k) {
      const Value* v = a.get(k, m.targets[k].c_str());
      if (v) args.emplace_back(m.targets[k], *v);
      else if (m.defaults[k]) args.emplace_back(m.targets[k], eval(*m.defaults[k]));
      else args.emplace_back(m.targets[k], Value::undefined("'" + m.targets[k] + "' is undefined"));
    }
    size_t saved_floor = floor_;
    floor_ = frames_.size();
    frames_.push_back(std::move(args));
    std::string text;
    try {
      exec_body(m.body, text);
    } catch (...) {
      frames_.pop_back();
      floor_ = saved_floor;
      throw;
    }
    frames_.pop_back();
    floor_ = saved_floor;
    return Value::string(std::move(text));
  }

  Value eval_call(const Expr& e) {
    if (e.a->kind == Expr::Kind::GetAttr) {
      Value obj = eval(*e.a->a);
      if (obj.is_undefined()) fail("chat template: {}: {}", position(prog_.source, e.pos), obj.s);
      CallArgs a = eval_args(e);
      bool found = false;
      Value r;
      try {
        r = call_method(obj, e.a->name, a, &found);
      } catch (const Error& err) {
        rethrow(err, e.pos);
      }
      if (found) return r;
      Value callee = get_attr(obj, e.a->name);
      return call_value(callee, a, e);
    }
    Value callee = eval(*e.a);
    return call_value(callee, eval_args(e), e);
  }

  Value call_value(const Value& callee, const CallArgs& a, const Expr& e) {
    try {
      if (callee.kind == Value::Kind::Builtin) {
        if (callee.s == "raise_exception") {
          const Value* msg = a.get(0, "message");
          fail("chat template: {}: raise_exception: {}", position(prog_.source, e.pos), msg ? to_str(*msg) : "");
        }
        return call_global(callee.s, a);
      }
      if (callee.kind == Value::Kind::Macro) return call_macro(*callee.macro, a, e.pos);
      if (callee.is_undefined()) fail_undefined(callee);
      fail("'{}' is not callable", type_name(callee));
    } catch (const Error& err) {
      rethrow(err, e.pos);
    }
  }

  Value eval(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::Literal: return e.value;
      case Expr::Kind::Name: {
        const Value* v = lookup(e.name);
        return v ? *v : Value::undefined("'" + e.name + "' is undefined");
      }
      case Expr::Kind::List: {
        List l;
        l.reserve(e.args.size());
        for (const auto& x : e.args) l.push_back(eval(*x));
        Value v = Value::make_list(std::move(l));
        v.tuple = e.value.tuple;
        return v;
      }
      case Expr::Kind::Dict: {
        Value d = Value::make_dict();
        for (size_t k = 0; k < e.args.size(); ++k) {
          Value key = eval(*e.args[k]);
          if (!key.is_string())
            fail("chat template: {}: unsupported construct: dict literal key of type {}",
                 position(prog_.source, e.args[k]->pos), type_name(key));
          d.set(key.s, eval(*e.kwargs[k]));
        }
        return d;
      }
      case Expr::Kind::GetAttr: {
        Value obj = eval(*e.a);
        if (obj.is_undefined()) fail("chat template: {}: {}", position(prog_.source, e.pos), obj.s);
        return get_attr(obj, e.name);
      }
      case Expr::Kind::GetItem: {
        Value obj = eval(*e.a);
        if (obj.is_undefined()) fail("chat template: {}: {}", position(prog_.source, e.pos), obj.s);
        return get_item(obj, eval(*e.b));
      }
      case Expr::Kind::Slice: return eval_slice(e);
      case Expr::Kind::Call: return eval_call(e);
      case Expr::Kind::Filter: {
        Value v = eval(*e.a);
        CallArgs a = eval_args(e);
        try {
          return call_filter(e.name, v, a);
        } catch (const Error& err) {
          rethrow(err, e.pos);
        }
      }
      case Expr::Kind::Test: {
        Value v = eval(*e.a);
        CallArgs a = eval_args(e);
        try {
          return Value::boolean(call_test(e.name, v, a) != e.negated);
        } catch (const Error& err) {
          rethrow(err, e.pos);
        }
      }
      case Expr::Kind::Unary: {
        Value v = eval(*e.a);
        if (e.name == "not") return Value::boolean(!truthy(v));
        if (v.kind == Value::Kind::Float) return Value::number(e.name == "-" ? -v.f : v.f);
        if (v.kind == Value::Kind::Int || v.kind == Value::Kind::Bool) {
          int64_t x = v.kind == Value::Kind::Bool ? v.b : v.i;
          return Value::integer(e.name == "-" ? -x : x);
        }
        fail("chat template: {}: bad operand type for unary {}: '{}'", position(prog_.source, e.pos), e.name,
             type_name(v));
      }
      case Expr::Kind::Binary: return eval_binary(e);
      case Expr::Kind::Compare: {
        Value left = eval(*e.a);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k]);
          const std::string& op = e.ops[k];
          bool r;
          try {
            if (op == "==") r = equals(left, right);
            else if (op == "!=") r = !equals(left, right);
            else if (op == "in") r = contains(right, left);
            else if (op == "not in") r = !contains(right, left);
            else {
              int c = compare(left, right, op.c_str());
              r = op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0;
            }
          } catch (const Error& err) {
            rethrow(err, e.pos);
          }
          if (!r) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case Expr::Kind::Cond:
        if (truthy(eval(*e.b))) return eval(*e.a);
        return e.c ? eval(*e.c) : Value::undefined("conditional expression evaluated to undefined");
    }
    return {};
  }

  Value eval_slice(const Expr& e) {
    Value obj = eval(*e.a);
    auto bound = [&](int idx) -> std::optional<int64_t> {
      if (!e.args[idx]) return std::nullopt;
      Value v = eval(*e.args[idx]);
      if (v.is_none()) return std::nullopt;
      if (v.kind != Value::Kind::Int)
        fail("chat template: {}: slice indices must be integers", position(prog_.source, e.pos));
      return v.i;
    };
    auto start = bound(0), stop = bound(1), stepv = bound(2);
    int64_t step = stepv.value_or(1);
    if (step == 0) fail("chat template: {}: slice step cannot be zero", position(prog_.source, e.pos));
    auto indices = [&](int64_t n) {
      // Python's slice.indices(n).
      auto clamp = [&](std::optional<int64_t> v, int64_t def) {
        if (!v) return def;
        int64_t x = *v;
        if (x < 0) x += n;
        if (step > 0) return std::clamp<int64_t>(x, 0, n);
        return std::clamp<int64_t>(x, -1, n - 1);
      };
      std::vector<int64_t> idx;
      int64_t b = clamp(start, step > 0 ? 0 : n - 1), en = clamp(stop, step > 0 ? n : -1);
      for (int64_t k = b; step > 0 ? k < en : k > en; k += step) idx.push_back(k);
      return idx;
    };
    if (obj.is_list()) {
      List out;
      for (int64_t k : indices(static_cast<int64_t>(obj.list->size()))) out.push_back((*obj.list)[k]);
      return Value::make_list(std::move(out));
    }
    if (obj.is_string()) {
      std::u32string cps = utf8_decode(obj.s), out;
      for (int64_t k : indices(static_cast<int64_t>(cps.size()))) out += cps[k];
      return Value::string(utf8_encode(out));
    }
    if (obj.is_undefined()) fail("chat template: {}: {}", position(prog_.source, e.pos), obj.s);
    fail("chat template: {}: '{}' is not subscriptable with a slice", position(prog_.source, e.pos), type_name(obj));
  }

  Value eval_binary(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = eval(*e.a);
      return truthy(l) ? eval(*e.b) : l;
    }
    if (op == "or") {
      Value l = eval(*e.a);
      return truthy(l) ? l : eval(*e.b);
    }
    Value l = eval(*e.a), r = eval(*e.b);
    if (op == "~") return Value::string(to_str(l) + to_str(r));
    auto bad = [&]() -> Value {
      if (l.is_undefined()) fail("chat template: {}: {}", position(prog_.source, e.pos), l.s);
      if (r.is_undefined()) fail("chat template: {}: {}", position(prog_.source, e.pos), r.s);
      fail("chat template: {}: unsupported operand type(s) for {}: '{}' and '{}'", position(prog_.source, e.pos), op,
           type_name(l), type_name(r));
    };
    if (op == "+") {
      if (l.is_string() && r.is_string()) return Value::string(l.s + r.s);
      if (l.is_list() && r.is_list()) {
        List out = *l.list;
        out.insert(out.end(), r.list->begin(), r.list->end());
        return Value::make_list(std::move(out));
      }
    }
    if (op == "*") {
      const Value* seq = l.is_string() || l.is_list() ? &l : r.is_string() || r.is_list() ? &r : nullptr;
      const Value* cnt = seq == &l ? &r : &l;
      if (seq && (cnt->kind == Value::Kind::Int || cnt->kind == Value::Kind::Bool)) {
        int64_t n = cnt->kind == Value::Kind::Bool ? cnt->b : cnt->i;
        if (seq->is_string()) {
          std::string out;
          for (int64_t k = 0; k < n; ++k) out += seq->s;
          return Value::string(std::move(out));
        }
        List out;
        for (int64_t k = 0; k < n; ++k) out.insert(out.end(), seq->list->begin(), seq->list->end());
        return Value::make_list(std::move(out));
      }
    }
    if (!l.is_number() || !r.is_number()) return bad();
    bool ints = l.kind != Value::Kind::Float && r.kind != Value::Kind::Float;
    auto iv = [](const Value& v) { return v.kind == Value::Kind::Bool ? static_cast<int64_t>(v.b) : v.i; };
    double x = as_double(l), y = as_double(r);
    if ((op == "/" || op == "//" || op == "%") && y == 0)
      fail("chat template: {}: division by zero", position(prog_.source, e.pos));
    if (op == "+") return ints ? Value::integer(iv(l) + iv(r)) : Value::number(x + y);
    if (op == "-") return ints ? Value::integer(iv(l) - iv(r)) : Value::number(x - y);
    if (op == "*") return ints ? Value::integer(iv(l) * iv(r)) : Value::number(x * y);
    if (op == "/") return Value::number(x / y);
    if (op == "//") {
      if (ints) {
        int64_t a = iv(l), b = iv(r), q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
        return Value::integer(q);
      }
      return Value::number(std::floor(x / y));
    }
    if (op == "%") {
      if (ints) {
        int64_t a = iv(l), b = iv(r), m = a % b;
        if (m != 0 && ((m < 0) != (b < 0))) m += b;
        return Value::integer(m);
      }
      double m = std::fmod(x, y);
      if (m != 0 && ((m < 0) != (y < 0))) m += y;
      return Value::number(m);
    }
    if (op == "**") {
      if (ints && iv(r) >= 0) {
        int64_t out = 1;
        for (int64_t k = 0; k < iv(r); ++k) out *= iv(l);
        return Value::integer(out);
      }
      return Value::number(std::pow(x, y));
    }
    return bad();
  }

  const Program& prog_;
  std::vector<Frame> frames_;
  size_t floor_ = 0;  // frames below this (except the globals) are hidden inside a macro call
};

}  // namespace

Template::Template(std::string source) : prog_(parse_template(std::move(source))) {}

std::string Template::render(const Dict& vars) const {
  std::string out;
  Renderer r(*prog_, vars);
  r.run(out);
  return out;
}

}  // namespace dsv3::jinja
