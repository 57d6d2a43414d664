// Lexer and recursive-descent parser for the Jinja2 subset of Hugging Face chat templates. The
// whitespace rules copy jinja2's lexer with trim_blocks=True and lstrip_blocks=True, which is how
// transformers builds its environment, so that output matches apply_chat_template byte for byte.
#include <algorithm>
#include <cctype>

#include "chat/jinja_ast.h"
#include "chat/jinja_builtins.h"
#include "core/error.h"

namespace dsv3::jinja {

std::string position(const std::string& source, size_t pos) {
  pos = std::min(pos, source.size());
  size_t line = 1 + std::count(source.begin(), source.begin() + pos, '\n');
  size_t bol = source.rfind('\n', pos == 0 ? 0 : pos - 1);
  size_t col = (bol == std::string::npos || pos == 0) ? pos + 1 : pos - bol;
  if (pos > 0 && source[pos - 1] == '\n') col = 1;
  return fmt::format("line {}, column {}", line, col);
}

namespace {

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;
  size_t pos;
  Value value;  // String/Int/Float literal
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {}

  std::vector<Token> run() {
    size_t n = src_.size();
    bool line_starting = true;
    while (pos_ < n) {
      size_t t = pos_;
      while (true) {
        t = src_.find('{', t);
        if (t == std::string::npos || t + 1 >= n) {
          t = std::string::npos;
          break;
        }
        char k = src_[t + 1];
        if (k == '{' || k == '%' || k == '#') break;
        ++t;
      }
      if (t == std::string::npos) {
        emit_text(src_.substr(pos_), pos_);
        break;
      }
      std::string text = src_.substr(pos_, t - pos_);
      char kind = src_[t + 1];
      char sign = t + 2 < n ? src_[t + 2] : 0;
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_space(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && kind != '{') {
        // lstrip_blocks: drop indentation before a block/comment tag that starts its line.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            std::all_of(text.begin() + l_pos, text.end(), is_space))
          text.resize(l_pos);
      }
      emit_text(std::move(text), pos_);
      pos_ = t + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        size_t e = src_.find("#}", pos_);
        if (e == std::string::npos) fail("chat template: {}: unclosed comment", position(src_, t));
        char before = e > pos_ ? src_[e - 1] : 0;
        pos_ = e + 2;
        end_tag(before, true);
      } else if (kind == '%' && try_raw(t)) {
        // handled
      } else {
        tokens_.push_back({kind == '{' ? Tok::VarBegin : Tok::BlockBegin, "", t, {}});
        lex_tag(kind == '{');
      }
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    tokens_.push_back({Tok::Eof, "", src_.size(), {}});
    return std::move(tokens_);
  }

 private:
  void emit_text(std::string text, size_t pos) {
    if (!text.empty()) tokens_.push_back({Tok::Text, std::move(text), pos, {}});
  }

  // After a tag end at pos_: `-` eats all following whitespace, trim_blocks eats one newline.
  void end_tag(char sign, bool block) {
    if (sign == '-') {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    } else if (block && sign != '+' && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  // {% raw %}...{% endraw %}: the body is emitted verbatim.
  bool try_raw(size_t tag_start) {
    size_t p = pos_;
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0 || (p + 3 < src_.size() && std::isalnum(static_cast<unsigned char>(src_[p + 3]))))
      return false;
    p += 3;
    while (p < src_.size() && is_space(src_[p])) ++p;
    char sign = 0;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
    if (src_.compare(p, 2, "%}") != 0) fail("chat template: {}: malformed raw tag", position(src_, tag_start));
    pos_ = p + 2;
    end_tag(sign, true);
    size_t search = pos_;
    while (true) {
      size_t e = src_.find("{%", search);
      if (e == std::string::npos) fail("chat template: {}: missing endraw", position(src_, tag_start));
      size_t q = e + 2;
      char lsign = q < src_.size() ? src_[q] : 0;
      if (lsign == '-' || lsign == '+') ++q;
      while (q < src_.size() && is_space(src_[q])) ++q;
      if (src_.compare(q, 6, "endraw") == 0) {
        std::string body = src_.substr(pos_, e - pos_);
        if (lsign == '-') {
          while (!body.empty() && is_space(body.back())) body.pop_back();
        }
        emit_text(std::move(body), pos_);
        q += 6;
        while (q < src_.size() && is_space(src_[q])) ++q;
        char rsign = 0;
        if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) rsign = src_[q++];
        if (src_.compare(q, 2, "%}") != 0) fail("chat template: {}: malformed endraw tag", position(src_, e));
        pos_ = q + 2;
        end_tag(rsign, true);
        return true;
      }
      search = e + 2;
    }
  }

  void lex_tag(bool var) {
    const char* close = var ? "}}" : "%}";
    size_t n = src_.size();
    while (true) {
      while (pos_ < n && is_space(src_[pos_])) ++pos_;
      if (pos_ >= n) fail("chat template: {}: unclosed tag", position(src_, tokens_.back().pos));
      size_t start = pos_;
      if ((src_[pos_] == '-' || src_[pos_] == '+') && src_.compare(pos_ + 1, 2, close) == 0) {
        char sign = src_[pos_];
        pos_ += 3;
        tokens_.push_back({var ? Tok::VarEnd : Tok::BlockEnd, "", start, {}});
        end_tag(sign, !var);
        return;
      }
      if (src_.compare(pos_, 2, close) == 0) {
        pos_ += 2;
        tokens_.push_back({var ? Tok::VarEnd : Tok::BlockEnd, "", start, {}});
        end_tag(0, !var);
        return;
      }
      char c = src_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (pos_ < n && (std::isalnum(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
        tokens_.push_back({Tok::Name, src_.substr(start, pos_ - start), start, {}});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number(start);
      } else if (c == '\'' || c == '"') {
        lex_string(start);
      } else {
        static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
                                    ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"};
        bool found = false;
        for (const char* op : ops) {
          size_t len = std::char_traits<char>::length(op);
          if (src_.compare(pos_, len, op) == 0) {
            tokens_.push_back({Tok::Op, op, start, {}});
            pos_ += len;
            found = true;
            break;
          }
        }
        if (!found) fail("chat template: {}: unexpected character '{}'", position(src_, start), c);
      }
    }
  }

  void lex_number(size_t start) {
    size_t n = src_.size();
    bool is_float = false;
    while (pos_ < n && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    if (pos_ + 1 < n && src_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(src_[pos_ + 1]))) {
      is_float = true;
      ++pos_;
      while (pos_ < n && (std::isdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) ++pos_;
    }
    if (pos_ < n && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t q = pos_ + 1;
      if (q < n && (src_[q] == '+' || src_[q] == '-')) ++q;
      if (q < n && std::isdigit(static_cast<unsigned char>(src_[q]))) {
        is_float = true;
        pos_ = q;
        while (pos_ < n && std::isdigit(static_cast<unsigned char>(src_[pos_]))) ++pos_;
      }
    }
    std::string text;
    for (size_t k = start; k < pos_; ++k)
      if (src_[k] != '_') text += src_[k];
    Token t{is_float ? Tok::Float : Tok::Int, text, start, {}};
    t.value = is_float ? Value::number(std::stod(text)) : Value::integer(std::stoll(text));
    tokens_.push_back(std::move(t));
  }

  // Python unicode-escape semantics, as jinja2 decodes string literals.
  void lex_string(size_t start) {
    char q = src_[pos_++];
    std::string out;
    size_t n = src_.size();
    auto hex = [&](int digits) {
      if (pos_ + digits > n) fail("chat template: {}: truncated escape in string", position(src_, start));
      char32_t cp = static_cast<char32_t>(std::stoul(src_.substr(pos_, digits), nullptr, 16));
      pos_ += digits;
      utf8_append(out, cp);
    };
    while (true) {
      if (pos_ >= n) fail("chat template: {}: unterminated string literal", position(src_, start));
      char c = src_[pos_++];
      if (c == q) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= n) fail("chat template: {}: unterminated string literal", position(src_, start));
      char e = src_[pos_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'v': out += '\v'; break;
        case 'a': out += '\a'; break;
        case '0': out += '\0'; break;
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case '\n': break;
        case 'x': hex(2); break;
        case 'u': hex(4); break;
        case 'U': hex(8); break;
        default:
          out += '\\';
          out += e;
      }
    }
    Token t{Tok::String, out, start, {}};
    t.value = Value::string(out);
    tokens_.push_back(std::move(t));
  }

  const std::string& src_;
  size_t pos_ = 0;
  std::vector<Token> tokens_;
};

class Parser {
 public:
  Parser(const std::string& src, std::vector<Token> toks) : src_(src), t_(std::move(toks)) {}

  Body parse_all() {
    std::string end;
    Body body = parse_body({}, &end);
    return body;
  }

 private:
  [[noreturn]] void error(size_t pos, const std::string& msg) {
    fail("chat template: {}: {}", position(src_, pos), msg);
  }
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* nm) const { return cur().type == Tok::Name && cur().text == nm; }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case Tok::Eof: return "end of template";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::VarEnd: return "end of print statement";
      case Tok::String: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) error(cur().pos, fmt::format("expected '{}', got {}", op, describe(cur())));
    ++i_;
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) error(cur().pos, fmt::format("expected a name, got {}", describe(cur())));
    return t_[i_++].text;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) error(cur().pos, fmt::format("expected end of statement block, got {}", describe(cur())));
    ++i_;
  }

  // Parses statements until a block tag whose name is in `ends`; stores that name in *end.
  Body parse_body(const std::vector<std::string>& ends, std::string* end) {
    Body body;
    while (true) {
      const Token& tk = cur();
      if (tk.type == Tok::Eof) {
        if (!ends.empty()) error(tk.pos, fmt::format("unexpected end of template, expected '{}'", ends.front()));
        *end = "";
        return body;
      }
      if (tk.type == Tok::Text) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Text;
        s->pos = tk.pos;
        s->text = tk.text;
        body.push_back(std::move(s));
        ++i_;
      } else if (tk.type == Tok::VarBegin) {
        ++i_;
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::Output;
        s->pos = tk.pos;
        s->expr = parse_tuple(true);
        if (cur().type != Tok::VarEnd) error(cur().pos, fmt::format("expected end of print statement, got {}", describe(cur())));
        ++i_;
        body.push_back(std::move(s));
      } else if (tk.type == Tok::BlockBegin) {
        ++i_;
        size_t pos = cur().pos;
        std::string name = expect_name();
        if (std::find(ends.begin(), ends.end(), name) != ends.end()) {
          *end = name;
          return body;  // the caller consumes the rest of the tag
        }
        body.push_back(parse_statement(name, pos));
      } else {
        error(tk.pos, fmt::format("unexpected {}", describe(tk)));
      }
    }
  }

  std::unique_ptr<Stmt> parse_statement(const std::string& name, size_t pos) {
    auto s = std::make_unique<Stmt>();
    s->pos = pos;
    std::string end;
    if (name == "if") {
      s->kind = Stmt::Kind::If;
      ExprPtr cond = parse_tuple(true);
      expect_block_end();
      while (true) {
        Body b = parse_body({"elif", "else", "endif"}, &end);
        s->branches.emplace_back(std::move(cond), std::move(b));
        if (end == "elif") {
          cond = parse_tuple(true);
          expect_block_end();
          continue;
        }
        expect_block_end();
        if (end == "else") {
          s->else_body = parse_body({"endif"}, &end);
          expect_block_end();
        }
        break;
      }
    } else if (name == "for") {
      s->kind = Stmt::Kind::For;
      s->targets = parse_targets();
      if (!is_name("in")) error(cur().pos, fmt::format("expected 'in', got {}", describe(cur())));
      ++i_;
      s->expr = parse_tuple(false);
      if (is_name("if")) {
        ++i_;
        s->cond = parse_expr(true);
      }
      if (is_name("recursive")) error(cur().pos, "unsupported construct: recursive for loop");
      expect_block_end();
      ++loop_depth_;
      s->body = parse_body({"else", "endfor"}, &end);
      --loop_depth_;
      expect_block_end();
      if (end == "else") {
        s->else_body = parse_body({"endfor"}, &end);
        expect_block_end();
      }
    } else if (name == "set") {
      std::string first = expect_name();
      if (is_op(".")) {
        ++i_;
        s->attr = expect_name();
        s->text = first;
      } else {
        s->targets.push_back(first);
        while (is_op(",")) {
          ++i_;
          s->targets.push_back(expect_name());
        }
        if (s->targets.size() == 1) s->text = first;
      }
      if (is_op("=")) {
        ++i_;
        s->kind = Stmt::Kind::Set;
        s->expr = parse_tuple(true);
        expect_block_end();
      } else {
        if (!s->attr.empty() || s->targets.size() != 1) error(cur().pos, "expected '=' in set");
        if (cur().type != Tok::BlockEnd) error(cur().pos, "unsupported construct: filtered set block");
        s->kind = Stmt::Kind::SetBlock;
        expect_block_end();
        s->body = parse_body({"endset"}, &end);
        expect_block_end();
      }
    } else if (name == "macro") {
      s->kind = Stmt::Kind::Macro;
      s->text = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        s->targets.push_back(expect_name());
        if (is_op("=")) {
          ++i_;
          s->defaults.push_back(parse_expr(true));
        } else {
          s->defaults.push_back(nullptr);
        }
        if (!is_op(")")) expect_op(",");
      }
      ++i_;
      expect_block_end();
      int saved_depth = loop_depth_;
      loop_depth_ = 0;
      s->body = parse_body({"endmacro"}, &end);
      loop_depth_ = saved_depth;
      if (cur().type == Tok::Name) ++i_;  // {% endmacro name %}
      expect_block_end();
    } else if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) error(pos, fmt::format("'{}' outside of a for loop", name));
      s->kind = name == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue;
      expect_block_end();
    } else if (name == "generation") {
      // transformers' AssistantTracker tag: renders its body unchanged.
      s->kind = Stmt::Kind::Scope;
      expect_block_end();
      s->body = parse_body({"endgeneration"}, &end);
      expect_block_end();
    } else if (name == "endif" || name == "endfor" || name == "else" || name == "elif" || name == "endset" ||
               name == "endmacro" || name == "endgeneration") {
      error(pos, fmt::format("unexpected '{}' without a matching opening tag", name));
    } else {
      error(pos, fmt::format("unsupported construct: tag '{}'", name));
    }
    return s;
  }

  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) ++i_;
    names.push_back(expect_name());
    while (is_op(",")) {
      ++i_;
      names.push_back(expect_name());
    }
    if (paren) expect_op(")");
    return names;
  }

  ExprPtr node(Expr::Kind k, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->pos = pos;
    return e;
  }

  // expr (',' expr)* -> a list literal when there is a comma (Python tuples).
  ExprPtr parse_tuple(bool condexpr) {
    size_t pos = cur().pos;
    ExprPtr first = parse_expr(condexpr);
    if (!is_op(",")) return first;
    auto l = node(Expr::Kind::List, pos);
    l->value.tuple = true;
    l->args.push_back(std::move(first));
    while (is_op(",")) {
      ++i_;
      if (cur().type == Tok::BlockEnd || cur().type == Tok::VarEnd || is_op(")")) break;
      l->args.push_back(parse_expr(condexpr));
    }
    return l;
  }

  ExprPtr parse_expr(bool condexpr = true) {
    size_t pos = cur().pos;
    ExprPtr e = parse_or();
    if (!condexpr) return e;
    while (is_name("if")) {
      ++i_;
      auto c = node(Expr::Kind::Cond, pos);
      c->b = parse_or();
      if (is_name("else")) {
        ++i_;
        c->c = parse_expr(true);
      }
      c->a = std::move(e);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const char* op, ExprPtr l, ExprPtr r, size_t pos) {
    auto e = node(Expr::Kind::Binary, pos);
    e->name = op;
    e->a = std::move(l);
    e->b = std::move(r);
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      size_t pos = cur().pos;
      ++i_;
      e = binary("or", std::move(e), parse_and(), pos);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      size_t pos = cur().pos;
      ++i_;
      e = binary("and", std::move(e), parse_not(), pos);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      auto e = node(Expr::Kind::Unary, cur().pos);
      ++i_;
      e->name = "not";
      e->a = parse_not();
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    size_t pos = cur().pos;
    ExprPtr e = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        ++i_;
      } else if (is_name("in")) {
        op = "in";
        ++i_;
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        op = "not in";
        i_ += 2;
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(Expr::Kind::Compare, pos);
        cmp->a = std::move(e);
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(e);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      std::string op = cur().text;
      size_t pos = cur().pos;
      ++i_;
      e = binary(op == "+" ? "+" : "-", std::move(e), parse_concat(), pos);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      size_t pos = cur().pos;
      ++i_;
      e = binary("~", std::move(e), parse_math2(), pos);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      static const char* names[] = {"*", "/", "//", "%"};
      const char* op = nullptr;
      for (const char* nm : names)
        if (cur().text == nm) op = nm;
      size_t pos = cur().pos;
      ++i_;
      e = binary(op, std::move(e), parse_pow(), pos);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      size_t pos = cur().pos;
      ++i_;
      e = binary("**", std::move(e), parse_unary(true), pos);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      e = node(Expr::Kind::Unary, cur().pos);
      e->name = cur().text;
      ++i_;
      e->a = parse_unary(false);
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filters(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& tk = cur();
    size_t pos = tk.pos;
    switch (tk.type) {
      case Tok::Name: {
        ++i_;
        const std::string& nm = tk.text;
        if (nm == "true" || nm == "True") return literal(Value::boolean(true), pos);
        if (nm == "false" || nm == "False") return literal(Value::boolean(false), pos);
        if (nm == "none" || nm == "None") return literal(Value::none(), pos);
        auto e = node(Expr::Kind::Name, pos);
        e->name = nm;
        return e;
      }
      case Tok::String: {
        std::string s;
        while (cur().type == Tok::String) s += t_[i_++].text;  // adjacent literals concatenate
        return literal(Value::string(std::move(s)), pos);
      }
      case Tok::Int:
      case Tok::Float: ++i_; return literal(tk.value, pos);
      case Tok::Op:
        if (tk.text == "(") {
          ++i_;
          if (is_op(")")) {
            ++i_;
            auto e = node(Expr::Kind::List, pos);
            e->value.tuple = true;
            return e;
          }
          ExprPtr e = parse_tuple(true);
          expect_op(")");
          return e;
        }
        if (tk.text == "[") {
          ++i_;
          auto e = node(Expr::Kind::List, pos);
          while (!is_op("]")) {
            e->args.push_back(parse_expr(true));
            if (!is_op("]")) expect_op(",");
          }
          ++i_;
          return e;
        }
        if (tk.text == "{") {
          ++i_;
          auto e = node(Expr::Kind::Dict, pos);
          while (!is_op("}")) {
            e->args.push_back(parse_expr(true));
            expect_op(":");
            e->kwargs.push_back(parse_expr(true));
            if (!is_op("}")) expect_op(",");
          }
          ++i_;
          return e;
        }
        break;
      default: break;
    }
    error(pos, fmt::format("unexpected {}", describe(tk)));
  }

  ExprPtr literal(Value v, size_t pos) {
    auto e = node(Expr::Kind::Literal, pos);
    e->value = std::move(v);
    return e;
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      size_t pos = cur().pos;
      if (is_op(".")) {
        ++i_;
        auto g = node(Expr::Kind::GetAttr, pos);
        if (cur().type == Tok::Int) {
          g->kind = Expr::Kind::GetItem;
          g->b = literal(cur().value, cur().pos);
          ++i_;
        } else {
          g->name = expect_name();
        }
        g->a = std::move(e);
        e = std::move(g);
      } else if (is_op("[")) {
        ++i_;
        e = parse_subscript(std::move(e), pos);
      } else if (is_op("(")) {
        auto c = node(Expr::Kind::Call, pos);
        c->a = std::move(e);
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target, size_t pos) {
    ExprPtr parts[3];
    int part = 0;
    bool slice = false;
    while (true) {
      if (is_op(":")) {
        slice = true;
        if (++part > 2) error(cur().pos, "too many ':' in slice");
        ++i_;
      } else if (is_op("]")) {
        ++i_;
        break;
      } else {
        if (parts[part]) error(cur().pos, fmt::format("unexpected {} in subscript", describe(cur())));
        parts[part] = parse_expr(true);
      }
    }
    if (!slice) {
      if (!parts[0]) error(pos, "empty subscript");
      auto g = node(Expr::Kind::GetItem, pos);
      g->a = std::move(target);
      g->b = std::move(parts[0]);
      return g;
    }
    auto s = node(Expr::Kind::Slice, pos);
    s->a = std::move(target);
    for (auto& p : parts) s->args.push_back(std::move(p));
    return s;
  }

  void parse_call_args(Expr& call) {
    expect_op("(");
    while (!is_op(")")) {
      if (is_op("*") || is_op("**")) error(cur().pos, "unsupported construct: *args/**kwargs in call");
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        call.keys.push_back(cur().text);
        i_ += 2;
        call.kwargs.push_back(parse_expr(true));
      } else {
        if (!call.keys.empty()) error(cur().pos, "positional argument follows keyword argument");
        call.args.push_back(parse_expr(true));
      }
      if (!is_op(")")) expect_op(",");
    }
    ++i_;
  }

  ExprPtr parse_filters(ExprPtr e) {
    while (true) {
      size_t pos = cur().pos;
      if (is_op("|")) {
        ++i_;
        auto f = node(Expr::Kind::Filter, pos);
        f->name = expect_name();
        while (is_op(".")) {  // dotted filter names
          ++i_;
          f->name += "." + expect_name();
        }
        if (!is_known_filter(f->name)) error(pos, fmt::format("unsupported construct: no filter named '{}'", f->name));
        f->a = std::move(e);
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        ++i_;
        auto t = node(Expr::Kind::Test, pos);
        if (is_name("not")) {
          t->negated = true;
          ++i_;
        }
        t->name = expect_name();
        if (!is_known_test(t->name)) error(pos, fmt::format("unsupported construct: no test named '{}'", t->name));
        t->a = std::move(e);
        const Token& nx = cur();
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((nx.type == Tok::Name || nx.type == Tok::String || nx.type == Tok::Int || nx.type == Tok::Float ||
                    is_op("[") || is_op("{")) &&
                   !(nx.type == Tok::Name && (nx.text == "else" || nx.text == "or" || nx.text == "and"))) {
          if (nx.type == Tok::Name && nx.text == "is") error(nx.pos, "You cannot chain multiple tests with is");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else {
        return e;
      }
    }
  }

  const std::string& src_;
  std::vector<Token> t_;
  size_t i_ = 0;
  int loop_depth_ = 0;  // for-loop nesting, so break/continue outside a loop fail at parse time
};

}  // namespace

std::shared_ptr<const Program> parse_template(std::string source) {
  // jinja2 normalises newlines to \n and drops one trailing newline (keep_trailing_newline=False).
  std::string norm;
  norm.reserve(source.size());
  for (size_t k = 0; k < source.size(); ++k) {
    if (source[k] == '\r') {
      norm += '\n';
      if (k + 1 < source.size() && source[k + 1] == '\n') ++k;
    } else {
      norm += source[k];
    }
  }
  if (!norm.empty() && norm.back() == '\n') norm.pop_back();
  auto prog = std::make_shared<Program>();
  prog->source = std::move(norm);
  Lexer lexer(prog->source);
  Parser parser(prog->source, lexer.run());
  prog->body = parser.parse_all();
  return prog;
}

}  // namespace dsv3::jinja
