// The parsed template: expressions and statements, shared by the parser (parse.cpp) and the
// renderer (render.cpp). Internal to tokenizers/jinja.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizers/jinja/value.h"

namespace slmops::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,  // value
    Name,     // name
    List,     // args: items
    Tuple,    // args: items
    Dict,     // args: key0, value0, key1, value1, ...
    GetAttr,  // args[0] . name
    GetItem,  // args[0] [ args[1] ]
    Slice,    // args[0] [ args[1] : args[2] : args[3] ] (null parts allowed)
    Call,     // args[0] ( args[1..], kwargs )
    Filter,   // args[0] | name ( args[1..], kwargs ); args[0] null in a filter block
    Test,     // args[0] is [not] name ( args[1..] )
    Unary,    // name: "-" or "+"; args[0]
    Binary,   // name: + - * / // % ** ~; args[0], args[1]
    Compare,  // args[0] ops[0] args[1] ops[1] args[2] ...
    And,
    Or,
    Not,
    Cond,  // args[1] if args[0] else args[2] (null: undefined)
  };
  Kind kind;
  int line = 0;
  Value value;
  std::string name;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
  bool negated = false;
  int depth = 1;  // levels of the tree below and including this node (operator chains), see parse.cpp
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    Text,         // text
    Output,       // exprs[0]
    If,           // exprs: conditions; bodies: one per condition, then the else body if has_else
    For,          // names: targets; exprs[0] iterable, exprs[1] filter (may be null); bodies: body, else
    Set,          // names: targets (several: unpack); exprs[0]
    SetAttr,      // names[0] . names[1] = exprs[0]
    SetBlock,     // names[0] (or names[0] . names[1]) = bodies[0] through the filter chain exprs[0] if any
    Macro,        // names[0] the macro, names[1..] parameters; exprs: defaults aligned to the last params
    FilterBlock,  // exprs[0]: the filter chain (innermost operand null); bodies[0]
    With,         // names = exprs; bodies[0]
    Break,
    Continue,
  };
  Kind kind;
  int line = 0;
  std::string text;
  std::vector<std::string> names;
  std::vector<ExprPtr> exprs;
  std::vector<Body> bodies;
  bool has_else = false;
  bool catch_varargs = false, catch_kwargs = false;  // a macro that reads `varargs` / `kwargs`
};

// Parses a template as Jinja2 lexes it with trim_blocks and lstrip_blocks on and
// keep_trailing_newline off (transformers' environment). Throws RenderError("line N: ...").
Body parse_template(std::string_view source);

// The filters and tests the renderer knows (the parser refuses others by name, as Jinja2
// does when it compiles).
bool is_known_filter(std::string_view name);
bool is_known_test(std::string_view name);

}  // namespace slmops::jinja
