// The values a Jinja template computes with, with Python's semantics: chat templates are
// written for Jinja2, which runs on Python objects, and their output is Python's str() of
// those objects ("None", "True", "1.0", "['a', 1]"). Arrays and objects are shared and
// immutable (transformers renders in Jinja2's ImmutableSandboxedEnvironment); a namespace()
// is the one mutable object.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace slmops::jinja {

// An error while rendering (Python's TypeError, UndefinedError, ...); the renderer adds the
// template line.
struct RenderError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Value;
struct Object;
struct Callable;
struct CallArgs;

// An undefined variable or a missing attribute; `hint` says what was looked up, for errors.
struct Undefined {
  std::string hint;
};
struct None {};

// A list; `tuple` marks Python tuples ((1, 2) prints with parentheses and never equals a list).
// `depth`: lists and dicts nested in it, itself included (bounded: see kMaxNesting).
struct Array {
  std::vector<Value> items;
  bool tuple = false;
  int depth = 1;
};

// Values nest at most this deep (a list in a list ...): printing, comparing and freeing them
// recurse once per level.
constexpr int kMaxNesting = 256;

class Value {
 public:
  // Strings are shared (immutable): copying a value never copies its text.
  using Storage = std::variant<Undefined, None, bool, int64_t, double, std::shared_ptr<const std::string>,
                               std::shared_ptr<const Array>, std::shared_ptr<Object>, std::shared_ptr<const Callable>>;
  Value() : v_(Undefined{}) {}
  Value(Undefined u) : v_(std::move(u)) {}
  Value(None) : v_(None{}) {}
  Value(bool b) : v_(b) {}
  Value(int64_t i) : v_(i) {}
  Value(int i) : v_(int64_t{i}) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::make_shared<const std::string>(std::move(s))) {}
  Value(const char* s) : v_(std::make_shared<const std::string>(s)) {}
  Value(std::shared_ptr<const Array> a) : v_(std::move(a)) {}
  Value(std::shared_ptr<Object> o) : v_(std::move(o)) {}
  Value(std::shared_ptr<const Callable> c) : v_(std::move(c)) {}

  static Value list(std::vector<Value> items, bool tuple = false);
  static Value undefined(std::string hint) { return Value(Undefined{std::move(hint)}); }

  bool is_undefined() const { return std::holds_alternative<Undefined>(v_); }
  bool is_none() const { return std::holds_alternative<None>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_float() const { return std::holds_alternative<double>(v_); }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
  bool is_string() const { return std::holds_alternative<std::shared_ptr<const std::string>>(v_); }
  bool is_array() const { return std::holds_alternative<std::shared_ptr<const Array>>(v_); }
  bool is_object() const { return std::holds_alternative<std::shared_ptr<Object>>(v_); }
  bool is_callable() const { return std::holds_alternative<std::shared_ptr<const Callable>>(v_); }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  const std::string& as_string() const { return *std::get<std::shared_ptr<const std::string>>(v_); }
  const Array& as_array() const { return *std::get<std::shared_ptr<const Array>>(v_); }
  Object& as_object() const { return *std::get<std::shared_ptr<Object>>(v_); }
  const Callable& as_callable() const { return *std::get<std::shared_ptr<const Callable>>(v_); }
  const std::string& undefined_hint() const { return std::get<Undefined>(v_).hint; }
  // A number as double (bool and int included).
  double number() const;
  // bool and int as int64 (is_int() || is_bool()).
  int64_t integer() const;
  bool is_integral() const { return is_int() || is_bool(); }

  // Python truthiness (undefined is false).
  bool truthy() const;
  // Python's type name, for error messages ("str", "int", "list", "dict", "NoneType", ...).
  std::string type_name() const;
  // Nesting of lists and dicts (0 for anything else).
  int depth() const;
  const Storage& storage() const { return v_; }

 private:
  Storage v_;
};

// A dict (insertion-ordered, string keys) or a namespace() (the only mutable object).
struct Object {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  int depth = 1;  // as Array::depth (a namespace's is fixed at creation; its values may change)
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v);
};
Value make_object(std::vector<std::pair<std::string, Value>> items, bool is_namespace = false);

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// A global function, a macro, or a bound method ('abc'.upper).
struct Callable {
  std::string name;
  std::function<Value(CallArgs&)> fn;
};
Value make_callable(std::string name, std::function<Value(CallArgs&)> fn);

// Python's str() and repr().
std::string py_str(const Value& v);
std::string py_repr(const Value& v);
// Python's repr of a float ("1.0", "0.1", "1e+16", "inf").
std::string py_float_repr(double d);
// Python's str.isspace for one code point.
bool py_isspace(char32_t cp);

// Python ==, and the ordering of < (throws the message of Python's TypeError when the types do
// not order).
bool py_equal(const Value& a, const Value& b);
int py_compare(const Value& a, const Value& b);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as Python writes it. Throws
// RenderError for undefined values, namespaces and callables (not serializable).
struct JsonStyle {
  bool ensure_ascii = false;
  bool indent = false;      // indent=None when false
  std::string indent_unit;  // indent=2 is "  ", indent="\t" is "\t"
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string py_json_dumps(const Value& v, const JsonStyle& style);

// JSON (ordered keys as in the file) to values and back.
Value from_json(const nlohmann::ordered_json& j);

}  // namespace slmops::jinja
