// Syntax tree of a parsed template (internal to the chat library). Every node keeps its byte offset
// in the source so errors can name line and column.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "chat/jinja_value.h"

namespace dsv3::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,   // value
    Name,      // name
    List,      // args (tuples are lists too)
    Dict,      // kwargs-like pairs in keys/args: keys[i] -> args[i]
    GetAttr,   // a.name
    GetItem,   // a[b]
    Slice,     // a[args0:args1:args2], missing parts are null
    Call,      // a(args, kwargs)
    Filter,    // a | name(args, kwargs)
    Test,      // a is [not] name(args)
    Unary,     // op a   ("-", "+", "not")
    Binary,    // a op b ("+", "-", "*", "/", "//", "%", "**", "~", "and", "or")
    Compare,   // a (ops[i] args[i])*
    Cond,      // a if b else c
  };
  Kind kind;
  size_t pos = 0;
  Value value;
  std::string name;
  ExprPtr a, b, c;
  std::vector<ExprPtr> args;
  std::vector<std::string> keys;  // Call/Filter kwarg names (parallel to kwargs); Dict literal keys exprs are in kwargs
  std::vector<ExprPtr> kwargs;
  std::vector<std::string> ops;   // Compare
  bool negated = false;           // Test: `is not`
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Scope };
  Kind kind;
  size_t pos = 0;
  std::string text;                  // Text: the text; Set: the name or namespace; Macro: the name
  std::string attr;                  // Set: `set ns.attr`
  std::vector<std::string> targets;  // For: loop variables; Set: unpacking targets; Macro: parameters
  std::vector<ExprPtr> defaults;     // Macro: parameter defaults (null when none)
  ExprPtr expr;                      // Output; Set value; For iterable
  ExprPtr cond;                      // For: `if` filter
  std::vector<std::pair<ExprPtr, Body>> branches;  // If / elif
  Body body, else_body;              // For, If(else), SetBlock, Macro, Scope
};

struct Program {
  std::string source;
  Body body;
};

// Parses a template with transformers' settings (trim_blocks, lstrip_blocks, loopcontrols).
std::shared_ptr<const Program> parse_template(std::string source);
// "line L, column C" of a byte offset.
std::string position(const std::string& source, size_t pos);

}  // namespace dsv3::jinja
