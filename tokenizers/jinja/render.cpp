// The renderer: statements, expressions with Python's semantics, and the filters, tests,
// methods and globals of Jinja2 (jinja2/filters.py, jinja2/tests.py, jinja2/defaults.py)
// that chat templates use.
#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <unordered_map>
#include <unordered_set>

#include "tokenizers/jinja/ast.h"
#include "tokenizers/jinja/template.h"
#include "tokenizers/unicode.h"

namespace slmops::jinja {

namespace {

constexpr size_t kMaxRange = 100000;            // Jinja2's sandbox MAX_RANGE
constexpr size_t kMaxString = size_t{1} << 28;  // 256 MiB: a string or output larger than this is refused
constexpr int kMaxCallDepth = 100;              // macro recursion (a chat template: a few levels)
constexpr int64_t kMaxSteps = 2'000'000;  // statements, expressions and loop turns per render (a chat template: ~1e4)
constexpr int kMaxRecursion = 500;        // nested evaluation (the stack: a frame per level; 1500 overflowed 8 MB under ASan)

// A RenderError that already names its template line.
struct LinedError : RenderError {
  LinedError(int line, const std::string& msg) : RenderError(fmt::format("line {}: {}", line, msg)) {}
};

[[noreturn]] void type_error(const std::string& msg) { throw RenderError(msg); }

[[noreturn]] void undefined_error(const Value& v) {
  throw RenderError(fmt::format("{} is undefined", v.undefined_hint().empty() ? "a value" : v.undefined_hint()));
}

std::u32string to_u32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) out.push_back(tok::next_code_point(s, i));
  return out;
}

std::string from_u32(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) tok::append_utf8(out, c);
  return out;
}

size_t cp_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

char32_t upper_cp(char32_t c) { return static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))); }
char32_t lower_cp(char32_t c) { return static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))); }
char32_t title_cp(char32_t c) { return static_cast<char32_t>(utf8proc_totitle(static_cast<utf8proc_int32_t>(c))); }
bool is_cased(char32_t c) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

// str.upper() with the special casings that grow a character (SpecialCasing.txt's
// unconditional Latin ones); utf8proc maps one code point to one.
std::string py_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char32_t c = tok::next_code_point(s, i);
    switch (c) {
      case 0xdf:
        out += "SS";
        break;
      case 0xfb00:
        out += "FF";
        break;
      case 0xfb01:
        out += "FI";
        break;
      case 0xfb02:
        out += "FL";
        break;
      case 0xfb03:
        out += "FFI";
        break;
      case 0xfb04:
        out += "FFL";
        break;
      case 0xfb05:
      case 0xfb06:
        out += "ST";
        break;
      case 0x149:
        out += "\u02bcN";
        break;
      default:
        tok::append_utf8(out, upper_cp(c));
    }
  }
  return out;
}
std::string py_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const char32_t c = tok::next_code_point(s, i);
    if (c == 0x130)
      out += "i\u0307";  // İ lowers to i + combining dot above
    else
      tok::append_utf8(out, lower_cp(c));
  }
  return out;
}

// str.title(): a cased character after an uncased one starts a word.
std::string py_title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  size_t i = 0;
  while (i < s.size()) {
    const char32_t c = tok::next_code_point(s, i);
    tok::append_utf8(out, prev_cased ? lower_cp(c) : title_cp(c));
    prev_cased = is_cased(c);
  }
  return out;
}

std::string py_capitalize(std::string_view s) {
  std::string out;
  size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    const char32_t c = tok::next_code_point(s, i);
    tok::append_utf8(out, first ? title_cp(c) : lower_cp(c));
    first = false;
  }
  return out;
}

// str.strip/lstrip/rstrip with `chars` (nullptr: whitespace).
std::string py_strip(std::string_view s, const std::string* chars, bool left, bool right) {
  const std::u32string u = to_u32(s);
  const std::u32string set = chars ? to_u32(*chars) : std::u32string();
  auto strip_it = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : py_isspace(c); };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip_it(u[b])) ++b;
  if (right)
    while (e > b && strip_it(u[e - 1])) --e;
  return from_u32(std::u32string_view(u).substr(b, e - b));
}

// str.split(sep, maxsplit) / rsplit; `sep` nullptr splits on whitespace runs.
std::vector<Value> py_split(const std::string& s, const std::string* sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> parts;
  if (sep) {
    if (sep->empty()) type_error("empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        const size_t f = s.find(*sep, pos);
        if (f == std::string::npos) break;
        parts.push_back(s.substr(pos, f - pos));
        pos = f + sep->size();
      }
      parts.push_back(s.substr(pos));
    } else {
      size_t end = s.size();
      std::vector<std::string> rev;
      while (maxsplit < 0 || static_cast<int64_t>(rev.size()) < maxsplit) {
        if (end < sep->size()) break;
        const size_t f = s.rfind(*sep, end - sep->size());
        if (f == std::string::npos) break;
        rev.push_back(s.substr(f + sep->size(), end - f - sep->size()));
        end = f;
      }
      rev.push_back(s.substr(0, end));
      parts.assign(rev.rbegin(), rev.rend());
    }
  } else {
    const std::u32string u = to_u32(s);
    if (!from_right) {
      size_t i = 0;
      while (true) {
        while (i < u.size() && py_isspace(u[i])) ++i;
        if (i >= u.size()) break;
        if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
          size_t e = u.size();
          while (e > i && py_isspace(u[e - 1])) --e;
          parts.push_back(from_u32(std::u32string_view(u).substr(i, e - i)));
          break;
        }
        size_t j = i;
        while (j < u.size() && !py_isspace(u[j])) ++j;
        parts.push_back(from_u32(std::u32string_view(u).substr(i, j - i)));
        i = j;
      }
    } else {
      size_t e = u.size();
      std::vector<std::string> rev;
      while (true) {
        while (e > 0 && py_isspace(u[e - 1])) --e;
        if (e == 0) break;
        if (maxsplit >= 0 && static_cast<int64_t>(rev.size()) >= maxsplit) {
          size_t b = 0;
          while (b < e && py_isspace(u[b])) ++b;
          rev.push_back(from_u32(std::u32string_view(u).substr(b, e - b)));
          break;
        }
        size_t b = e;
        while (b > 0 && !py_isspace(u[b - 1])) --b;
        rev.push_back(from_u32(std::u32string_view(u).substr(b, e - b)));
        e = b;
      }
      parts.assign(rev.rbegin(), rev.rend());
    }
  }
  std::vector<Value> out;
  out.reserve(parts.size());
  for (auto& p : parts) out.emplace_back(std::move(p));
  return out;
}

// str.splitlines() (keepends false).
std::vector<std::string> py_splitlines(std::string_view s) {
  std::vector<std::string> lines;
  std::string cur;
  size_t i = 0;
  bool pending = false;
  while (i < s.size()) {
    const size_t start = i;
    const char32_t cp = tok::next_code_point(s, i);
    pending = true;
    if (cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) || cp == 0x85 ||
        cp == 0x2028 || cp == 0x2029) {
      if (cp == '\r' && i < s.size() && s[i] == '\n') ++i;
      lines.push_back(std::move(cur));
      cur.clear();
      pending = false;
      continue;
    }
    cur.append(s, start, i - start);
  }
  if (pending) lines.push_back(std::move(cur));
  return lines;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& with, int64_t count) {
  std::string out;
  if (old.empty()) {
    // Python inserts `with` between every character (and at both ends).
    const std::u32string u = to_u32(s);
    if (!with.empty() && (u.size() + 1) > kMaxString / with.size())
      type_error("replace: the result would be too large");
    int64_t n = 0;
    for (size_t k = 0; k <= u.size(); ++k) {
      if (count < 0 || n < count) {
        out += with;
        ++n;
      }
      if (k < u.size()) tok::append_utf8(out, u[k]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t n = 0;
  while (count < 0 || n < count) {
    const size_t f = s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += with;
    if (out.size() > kMaxString) type_error("replace: the result would be too large");
    pos = f + old.size();
    ++n;
  }
  out.append(s, pos);
  return out;
}

int64_t py_count(const std::string& s, const std::string& sub) {
  if (sub.empty()) return static_cast<int64_t>(cp_count(s)) + 1;
  int64_t n = 0;
  for (size_t pos = s.find(sub); pos != std::string::npos; pos = s.find(sub, pos + sub.size())) ++n;
  return n;
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// The arguments of a builtin bound to its parameter names, as Python binds them.
class Params {
 public:
  Params(std::string_view fn, const CallArgs& a, std::initializer_list<std::string_view> names) : a_(a), names_(names) {
    if (a.positional.size() > names_.size())
      type_error(fmt::format("{}() takes at most {} arguments ({} given)", fn, names_.size(), a.positional.size()));
    for (const auto& [k, v] : a.keyword) {
      const auto it = std::find(names_.begin(), names_.end(), k);
      if (it == names_.end()) type_error(fmt::format("{}() got an unexpected keyword argument '{}'", fn, k));
      if (static_cast<size_t>(it - names_.begin()) < a.positional.size())
        type_error(fmt::format("{}() got multiple values for argument '{}'", fn, k));
    }
  }
  const Value* get(size_t i) const {
    if (i < a_.positional.size()) return &a_.positional[i];
    for (const auto& [k, v] : a_.keyword)
      if (k == names_[i]) return &v;
    return nullptr;
  }
  Value get(size_t i, Value dflt) const {
    const Value* v = get(i);
    return v ? *v : std::move(dflt);
  }

 private:
  const CallArgs& a_;
  std::vector<std::string_view> names_;
};

std::string str_arg(const Value& v, std::string_view what) {
  if (!v.is_string()) type_error(fmt::format("{} must be a string, not {}", what, v.type_name()));
  return v.as_string();
}

// The items a for loop (or list()) sees: a list's items, a dict's keys, a string's characters.
std::vector<Value> iterate(const Value& v) {
  if (v.is_array()) return v.as_array().items;
  if (v.is_undefined()) return {};
  if (v.is_object() && !v.as_object().is_namespace) {
    std::vector<Value> keys;
    for (const auto& kv : v.as_object().items) keys.emplace_back(kv.first);
    return keys;
  }
  if (v.is_string()) {
    std::vector<Value> chars;
    for (char32_t c : to_u32(v.as_string())) {
      std::string s;
      tok::append_utf8(s, c);
      chars.emplace_back(std::move(s));
    }
    return chars;
  }
  type_error(fmt::format("'{}' object is not iterable", v.type_name()));
}

int64_t py_len(const Value& v) {
  if (v.is_string()) return static_cast<int64_t>(cp_count(v.as_string()));
  if (v.is_array()) return static_cast<int64_t>(v.as_array().items.size());
  if (v.is_object() && !v.as_object().is_namespace) return static_cast<int64_t>(v.as_object().items.size());
  if (v.is_undefined()) return 0;
  type_error(fmt::format("object of type '{}' has no len()", v.type_name()));
}

bool py_contains(const Value& container, const Value& item) {
  if (container.is_string()) {
    if (!item.is_string())
      type_error(fmt::format("'in <string>' requires string as left operand, not {}", item.type_name()));
    return container.as_string().find(item.as_string()) != std::string::npos;
  }
  if (container.is_object() && !container.as_object().is_namespace) {
    if (!item.is_string()) return false;
    return container.as_object().find(item.as_string()) != nullptr;
  }
  if (container.is_array()) {
    for (const auto& x : container.as_array().items)
      if (py_equal(x, item)) return true;
    return false;
  }
  if (container.is_undefined()) return false;
  type_error(fmt::format("argument of type '{}' is not iterable", container.type_name()));
}

// Python's slice of n items: the indices it selects.
std::vector<size_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step) {
  auto idx = [](const Value& v) -> std::optional<int64_t> {
    if (v.is_undefined() || v.is_none()) return std::nullopt;
    if (!v.is_integral()) type_error("slice indices must be integers or None");
    return v.integer();
  };
  const int64_t st = idx(step).value_or(1);
  if (st == 0) type_error("slice step cannot be zero");
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) x += n;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  const int64_t b = clamp(idx(start), st > 0 ? 0 : n - 1);
  const int64_t e = clamp(idx(stop), st > 0 ? n : -1);
  std::vector<size_t> out;
  if (st > 0) {
    for (int64_t i = b; i < e;) {
      out.push_back(static_cast<size_t>(i));
      if (st >= e - i) break;  // no i += st past e (st may be near INT64_MAX)
      i += st;
    }
  } else {
    for (int64_t i = b; i > e;) {
      out.push_back(static_cast<size_t>(i));
      if (st == INT64_MIN || -st >= i - e) break;
      i += st;
    }
  }
  return out;
}

int64_t checked(int64_t a, int64_t b, char op) {
  int64_t r = 0;
  const bool overflow = op == '+'   ? __builtin_add_overflow(a, b, &r)
                        : op == '-' ? __builtin_sub_overflow(a, b, &r)
                                    : __builtin_mul_overflow(a, b, &r);
  if (overflow) type_error("integer overflow (Python integers are unbounded; this engine's are 64-bit)");
  return r;
}

int64_t floor_div(int64_t a, int64_t b) {
  if (b == 0) type_error("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) type_error("integer overflow");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

std::string repeat(const std::string& s, int64_t n) {
  if (n <= 0) return {};
  if (s.size() * static_cast<size_t>(n) > kMaxString || static_cast<size_t>(n) > kMaxString)
    type_error("string repetition too large");
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) out += s;
  return out;
}

Value binary_op(const std::string& op, const Value& l, const Value& r) {
  if (op == "~") return Value(py_str(l) + py_str(r));
  if (l.is_undefined()) undefined_error(l);
  if (r.is_undefined()) undefined_error(r);
  auto unsupported = [&]() -> Value {
    type_error(fmt::format("unsupported operand type(s) for {}: '{}' and '{}'", op, l.type_name(), r.type_name()));
  };
  if (l.is_number() && r.is_number()) {
    const bool ints = l.is_integral() && r.is_integral();
    if (op == "+" || op == "-" || op == "*") {
      if (ints) return Value(checked(l.integer(), r.integer(), op[0]));
      const double a = l.number(), b = r.number();
      return Value(op == "+" ? a + b : op == "-" ? a - b : a * b);
    }
    if (op == "/") {
      if (r.number() == 0) type_error("division by zero");
      return Value(l.number() / r.number());
    }
    if (op == "//" || op == "%") {
      if (ints) {
        const int64_t a = l.integer(), b = r.integer();
        const int64_t q = floor_div(a, b);
        return op == "//" ? Value(q) : Value(a - q * b);
      }
      const double a = l.number(), b = r.number();
      if (b == 0) type_error("float division by zero");
      const double q = std::floor(a / b);
      if (op == "//") return Value(q);
      double m = std::fmod(a, b);
      if (m != 0 && ((m < 0) != (b < 0))) m += b;
      return Value(m);
    }
    if (op == "**") {
      if (ints && r.integer() >= 0) {
        int64_t base = l.integer(), e = r.integer(), acc = 1;
        while (e > 0) {
          if (e & 1) acc = checked(acc, base, '*');
          e >>= 1;
          if (e) base = checked(base, base, '*');
        }
        return Value(acc);
      }
      return Value(std::pow(l.number(), r.number()));
    }
  }
  if (op == "+") {
    if (l.is_string() && r.is_string()) {
      if (l.as_string().size() + r.as_string().size() > kMaxString) type_error("string too large");
      return Value(l.as_string() + r.as_string());
    }
    if (l.is_array() && r.is_array() && l.as_array().tuple == r.as_array().tuple) {
      std::vector<Value> items = l.as_array().items;
      items.insert(items.end(), r.as_array().items.begin(), r.as_array().items.end());
      return Value::list(std::move(items), l.as_array().tuple);
    }
    if (l.is_string() || r.is_string())
      type_error(
          fmt::format("can only concatenate str (not \"{}\") to str", l.is_string() ? r.type_name() : l.type_name()));
  }
  if (op == "*") {
    if (l.is_string() && r.is_integral()) return Value(repeat(l.as_string(), r.integer()));
    if (r.is_string() && l.is_integral()) return Value(repeat(r.as_string(), l.integer()));
    if ((l.is_array() && r.is_integral()) || (r.is_array() && l.is_integral())) {
      const Array& a = l.is_array() ? l.as_array() : r.as_array();
      const int64_t n = l.is_array() ? r.integer() : l.integer();
      std::vector<Value> items;
      if (n <= 0 || a.items.empty()) return Value::list({}, a.tuple);
      if (static_cast<uint64_t>(n) > kMaxRange || a.items.size() * static_cast<size_t>(n) > kMaxRange)
        type_error("list repetition too large");
      for (int64_t k = 0; k < n; ++k) items.insert(items.end(), a.items.begin(), a.items.end());
      return Value::list(std::move(items), a.tuple);
    }
  }
  if (op == "%" && l.is_string()) type_error("printf-style string formatting ('%' on a string) is not supported");
  return unsupported();
}

bool compare_op(const std::string& op, const Value& l, const Value& r) {
  if (op == "==") return py_equal(l, r);
  if (op == "!=") return !py_equal(l, r);
  if (op == "in") return py_contains(r, l);
  if (op == "not in") return !py_contains(r, l);
  const int c = py_compare(l, r);
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};
using FramePtr = std::shared_ptr<Frame>;

const char* const kFilters[] = {
    "abs",    "attr",       "capitalize", "center",  "count", "d",        "default",     "dictsort",   "e",
    "escape", "batch",      "first",      "float",   "slice", "truncate", "forceescape", "indent",     "int",
    "items",  "join",       "last",       "length",  "list",  "lower",    "map",         "max",        "min",
    "reject", "rejectattr", "replace",    "reverse", "round", "safe",     "select",      "selectattr", "sort",
    "string", "sum",        "title",      "tojson",  "trim",  "unique",   "upper",       "wordcount"};
const char* const kTests[] = {"==",       "!=",       "<",           "<=",       ">",           ">=",       "boolean",
                              "callable", "defined",  "divisibleby", "eq",       "equalto",     "escaped",  "even",
                              "false",    "filter",   "float",       "ge",       "greaterthan", "gt",       "in",
                              "integer",  "iterable", "le",          "lessthan", "lower",       "lt",       "mapping",
                              "ne",       "none",     "number",      "odd",      "sameas",      "sequence", "string",
                              "test",     "true",     "undefined",   "upper"};

class Renderer {
 public:
  explicit Renderer(const std::vector<std::pair<std::string, Value>>& variables) {
    root_ = std::make_shared<Frame>();
    for (const auto& [k, v] : variables) root_->vars[k] = v;
  }

  std::string run(const Body& body) {
    std::string out;
    exec(body, root_, out);
    return out;
  }

 private:
  enum class Flow { Normal, Break, Continue };

  Value lookup(const std::string& name, const FramePtr& f) const {
    for (const Frame* p = f.get(); p; p = p->parent.get()) {
      const auto it = p->vars.find(name);
      if (it != p->vars.end()) return it->second;
    }
    if (Value g = global(name); !g.is_undefined()) return g;
    return Value::undefined("'" + name + "'");
  }

  Value global(const std::string& name) const {
    if (name == "range") return make_callable("range", [](CallArgs& a) { return range(a); });
    if (name == "namespace" || name == "dict") {
      const bool ns = name == "namespace";
      return make_callable(name, [ns, this](CallArgs& a) {
        std::vector<std::pair<std::string, Value>> items;
        if (a.positional.size() > 1)
          type_error(fmt::format("{}() takes at most 1 positional argument", ns ? "namespace" : "dict"));
        if (!a.positional.empty()) {
          const Value& init = a.positional[0];
          if (!init.is_object()) type_error("namespace()/dict() takes a mapping");
          items = init.as_object().items;
        }
        for (auto& kv : a.keyword) items.push_back(kv);
        Value v = make_object(std::move(items), ns);
        if (ns) namespaces_.push_back(std::get<std::shared_ptr<Object>>(v.storage()));
        return v;
      });
    }
    if (name == "joiner")
      return make_callable("joiner", [](CallArgs& a) {
        const Params p("joiner", a, {"sep"});
        const std::string sep = py_str(p.get(0, Value(", ")));
        auto used = std::make_shared<bool>(false);
        return make_callable("joiner", [sep, used](CallArgs&) {
          if (!*used) {
            *used = true;
            return Value("");
          }
          return Value(sep);
        });
      });
    if (name == "cycler")
      return make_callable("cycler", [this](CallArgs& a) {
        if (a.positional.empty()) type_error("at least one item has to be provided");
        auto items = std::make_shared<std::vector<Value>>(a.positional);
        auto pos = std::make_shared<size_t>(0);
        auto obj = std::make_shared<Object>();
        obj->is_namespace = true;
        namespaces_.push_back(obj);
        std::weak_ptr<Object> weak = obj;  // its methods live in it
        obj->set("next", make_callable("cycler.next", [items, pos, weak](CallArgs&) {
                   const Value v = (*items)[*pos];
                   *pos = (*pos + 1) % items->size();
                   if (auto o = weak.lock()) o->set("current", (*items)[*pos]);
                   return v;
                 }));
        obj->set("reset", make_callable("cycler.reset", [items, pos, weak](CallArgs&) {
                   *pos = 0;
                   if (auto o = weak.lock()) o->set("current", (*items)[0]);
                   return Value(None{});
                 }));
        obj->set("current", (*items)[0]);
        return Value(obj);
      });
    if (name == "raise_exception")
      return make_callable("raise_exception", [](CallArgs& a) -> Value {
        const Params p("raise_exception", a, {"message"});
        throw Raised(py_str(p.get(0, Value(""))));
      });
    if (name == "strftime_now")
      return make_callable("strftime_now", [](CallArgs& a) -> Value {
        const Params p("strftime_now", a, {"format"});
        const std::string f = str_arg(p.get(0, Value("")), "strftime_now format");
        const std::time_t t = std::time(nullptr);
        std::tm tm{};
        localtime_r(&t, &tm);
        char buf[512];
        const size_t n = f.empty() ? 0 : std::strftime(buf, sizeof buf, f.c_str(), &tm);
        return Value(std::string(buf, n));
      });
    return Value();
  }

  static Value range(CallArgs& a) {
    if (!a.keyword.empty()) type_error("range() takes no keyword arguments");
    std::vector<int64_t> n;
    for (const auto& v : a.positional) {
      if (!v.is_integral()) type_error(fmt::format("'{}' object cannot be interpreted as an integer", v.type_name()));
      n.push_back(v.integer());
    }
    if (n.empty() || n.size() > 3) type_error(fmt::format("range expected 1 to 3 arguments, got {}", n.size()));
    const int64_t start = n.size() == 1 ? 0 : n[0], stop = n.size() == 1 ? n[0] : n[1], step = n.size() == 3 ? n[2] : 1;
    if (step == 0) type_error("range() arg 3 must not be zero");
    std::vector<Value> items;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (items.size() >= kMaxRange) type_error(fmt::format("range too big, maximum size for range is {}", kMaxRange));
      items.emplace_back(i);
    }
    return Value::list(std::move(items));
  }

  // ---- statements ----

  Flow exec(const Body& body, const FramePtr& f, std::string& out) {
    for (const auto& s : body) {
      Flow flow;
      try {
        flow = exec_one(*s, f, out);
      } catch (const LinedError&) {
        throw;
      } catch (const RenderError& e) {
        throw LinedError(s->line, e.what());
      }
      if (out.size() > kMaxString) throw LinedError(s->line, "output too large");
      if (flow != Flow::Normal) return flow;
    }
    return Flow::Normal;
  }

  // Counts work and nesting; refuses a template that would run (or recurse) without end.
  struct Step {
    Renderer& r;
    explicit Step(Renderer& renderer) : r(renderer) {
      if (++r.steps_ > kMaxSteps) type_error(fmt::format("the template does more than {} steps of work", kMaxSteps));
      if (++r.nesting_ > kMaxRecursion) {
        --r.nesting_;
        type_error(fmt::format("evaluation nested deeper than {} levels", kMaxRecursion));
      }
    }
    ~Step() { --r.nesting_; }
  };

  Flow exec_one(const Stmt& s, const FramePtr& f, std::string& out) {
    const Step step(*this);
    switch (s.kind) {
      case Stmt::Kind::Text:
        out += s.text;
        return Flow::Normal;
      case Stmt::Kind::Output:
        out += py_str(eval(*s.exprs[0], f));
        return Flow::Normal;
      case Stmt::Kind::If:
        for (size_t k = 0; k < s.exprs.size(); ++k)
          if (eval(*s.exprs[k], f).truthy()) return exec(s.bodies[k], f, out);
        if (s.has_else) return exec(s.bodies.back(), f, out);
        return Flow::Normal;
      case Stmt::Kind::For:
        return exec_for(s, f, out);
      case Stmt::Kind::Set:
        assign(s.names, eval(*s.exprs[0], f), *f);
        return Flow::Normal;
      case Stmt::Kind::SetAttr: {
        const Value ns = lookup(s.names[0], f);
        if (!ns.is_object() || !ns.as_object().is_namespace)
          type_error("cannot assign attribute on non-namespace object");
        ns.as_object().set(s.names[1], eval(*s.exprs[0], f));
        return Flow::Normal;
      }
      case Stmt::Kind::SetBlock: {
        std::string captured;
        exec(s.bodies[0], f, captured);
        Value v(std::move(captured));
        if (!s.exprs.empty()) v = apply_filter_chain(*s.exprs[0], &v, f);
        if (s.names.size() == 1) {
          f->vars[s.names[0]] = std::move(v);
          return Flow::Normal;
        }
        const Value ns = lookup(s.names[0], f);
        if (!ns.is_object() || !ns.as_object().is_namespace)
          type_error("cannot assign attribute on non-namespace object");
        ns.as_object().set(s.names[1], std::move(v));
        return Flow::Normal;
      }
      case Stmt::Kind::Macro:
        f->vars[s.names[0]] = make_macro(s, f);
        return Flow::Normal;
      case Stmt::Kind::FilterBlock: {
        std::string captured;
        exec(s.bodies[0], f, captured);
        const Value v(std::move(captured));
        out += py_str(apply_filter_chain(*s.exprs[0], &v, f));
        return Flow::Normal;
      }
      case Stmt::Kind::With: {
        auto inner = std::make_shared<Frame>();
        inner->parent = f;
        for (size_t k = 0; k < s.names.size(); ++k) inner->vars[s.names[k]] = eval(*s.exprs[k], f);
        return exec(s.bodies[0], inner, out);
      }
      case Stmt::Kind::Break:
        return Flow::Break;
      case Stmt::Kind::Continue:
        return Flow::Continue;
    }
    return Flow::Normal;
  }

  static void assign(const std::vector<std::string>& names, const Value& v, Frame& f) {
    if (names.size() == 1) {
      f.vars[names[0]] = v;
      return;
    }
    const std::vector<Value> items = iterate(v);
    if (items.size() != names.size())
      type_error(fmt::format("{} values to unpack (expected {}, got {})",
                             items.size() < names.size() ? "not enough" : "too many", names.size(), items.size()));
    for (size_t k = 0; k < names.size(); ++k) f.vars[names[k]] = items[k];
  }

  Flow exec_for(const Stmt& s, const FramePtr& f, std::string& out) {
    const Value seq = eval(*s.exprs[0], f);
    std::vector<Value> items = iterate(seq);
    if (s.exprs[1]) {
      std::vector<Value> kept;
      for (auto& item : items) {
        auto probe = std::make_shared<Frame>();
        probe->parent = f;
        assign(s.names, item, *probe);
        if (eval(*s.exprs[1], probe).truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    // Jinja2 runs the else block unless an iteration ran to its end (a break or continue in
    // the only iterations leaves it to run).
    bool completed = false;
    auto changed_state = std::make_shared<std::optional<std::vector<Value>>>();
    for (int64_t k = 0; k < n; ++k) {
      if (++steps_ > kMaxSteps) type_error(fmt::format("the template does more than {} steps of work", kMaxSteps));
      auto frame = std::make_shared<Frame>();
      frame->parent = f;
      assign(s.names, items[static_cast<size_t>(k)], *frame);
      std::vector<std::pair<std::string, Value>> loop = {{"index", Value(k + 1)},    {"index0", Value(k)},
                                                         {"revindex", Value(n - k)}, {"revindex0", Value(n - k - 1)},
                                                         {"first", Value(k == 0)},   {"last", Value(k == n - 1)},
                                                         {"length", Value(n)},       {"depth", Value(1)},
                                                         {"depth0", Value(0)}};
      if (k > 0) loop.emplace_back("previtem", items[static_cast<size_t>(k - 1)]);
      if (k + 1 < n) loop.emplace_back("nextitem", items[static_cast<size_t>(k + 1)]);
      loop.emplace_back("cycle", make_callable("loop.cycle", [k](CallArgs& a) -> Value {
                          if (a.positional.empty()) type_error("no items for cycling given");
                          return a.positional[static_cast<size_t>(k) % a.positional.size()];
                        }));
      loop.emplace_back(
          "changed", make_callable("loop.changed", [changed_state](CallArgs& a) -> Value {
            if (*changed_state && changed_state->value().size() == a.positional.size() &&
                std::equal(a.positional.begin(), a.positional.end(), changed_state->value().begin(), py_equal))
              return Value(false);
            *changed_state = a.positional;
            return Value(true);
          }));
      frame->vars["loop"] = make_object(std::move(loop));
      const Flow flow = exec(s.bodies[0], frame, out);
      if (flow == Flow::Break) break;
      if (flow == Flow::Normal) completed = true;
    }
    changed_state->reset();  // it may hold the loop object (loop.changed(loop)): a cycle to break
    if (!completed && s.has_else) return exec(s.bodies[1], f, out);
    return Flow::Normal;
  }

  Value make_macro(const Stmt& s, const FramePtr& defined_in) {
    const Stmt* m = &s;
    // The defining frame is held weakly: the macro lives in that frame (a strong hold would
    // be a cycle that is never freed); a macro called after its loop iteration ended sees the
    // top-level variables.
    std::weak_ptr<Frame> weak_frame = defined_in;
    return make_callable(s.names[0], [this, m, weak_frame](CallArgs& a) -> Value {
      if (++depth_ > kMaxCallDepth) {
        --depth_;
        type_error(fmt::format("macro '{}': recursion deeper than {} calls", m->names[0], kMaxCallDepth));
      }
      struct Guard {
        int& d;
        ~Guard() { --d; }
      } guard{depth_};
      auto frame = std::make_shared<Frame>();
      frame->parent = weak_frame.lock();
      if (!frame->parent) frame->parent = root_;
      const size_t nparams = m->names.size() - 1, ndefaults = m->exprs.size();
      std::vector<Value> varargs;
      for (size_t k = 0; k < a.positional.size(); ++k) {
        if (k < nparams) {
          frame->vars[m->names[k + 1]] = a.positional[k];
        } else if (m->catch_varargs) {
          varargs.push_back(a.positional[k]);
        } else {
          type_error(fmt::format("macro '{}' takes not more than {} argument(s)", m->names[0], nparams));
        }
      }
      std::vector<std::pair<std::string, Value>> kwargs;
      for (const auto& [key, v] : a.keyword) {
        const auto it = std::find(m->names.begin() + 1, m->names.end(), key);
        if (it != m->names.end()) {
          if (static_cast<size_t>(it - m->names.begin() - 1) < a.positional.size())
            type_error(fmt::format("macro '{}' got multiple values for argument '{}'", m->names[0], key));
          frame->vars[key] = v;
        } else if (m->catch_kwargs) {
          kwargs.emplace_back(key, v);
        } else {
          type_error(fmt::format("macro '{}' takes no keyword argument '{}'", m->names[0], key));
        }
      }
      for (size_t k = 0; k < nparams; ++k) {
        const std::string& p = m->names[k + 1];
        if (frame->vars.count(p)) continue;
        const size_t first_default = nparams - ndefaults;
        frame->vars[p] = k >= first_default ? eval(*m->exprs[k - first_default], frame)
                                            : Value::undefined(fmt::format("parameter '{}' was not provided", p));
      }
      frame->vars["varargs"] = Value::list(std::move(varargs), true);
      frame->vars["kwargs"] = make_object(std::move(kwargs));
      std::string out;
      exec(m->bodies[0], frame, out);
      return Value(std::move(out));
    });
  }

  // ---- expressions ----

  Value eval(const Expr& e, const FramePtr& f) {
    const Step step(*this);
    switch (e.kind) {
      case Expr::Kind::Literal:
        return e.value;
      case Expr::Kind::Name:
        return lookup(e.name, f);
      case Expr::Kind::List:
      case Expr::Kind::Tuple: {
        std::vector<Value> items;
        items.reserve(e.args.size());
        for (const auto& a : e.args) items.push_back(eval(*a, f));
        return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
      }
      case Expr::Kind::Dict: {
        std::vector<std::pair<std::string, Value>> items;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          const Value key = eval(*e.args[k], f);
          if (!key.is_string()) type_error(fmt::format("dict keys must be strings here, got {}", key.type_name()));
          items.emplace_back(key.as_string(), eval(*e.args[k + 1], f));
        }
        return make_object(std::move(items));
      }
      case Expr::Kind::GetAttr:
        return getattr(eval(*e.args[0], f), e.name);
      case Expr::Kind::GetItem:
        return getitem(eval(*e.args[0], f), eval(*e.args[1], f));
      case Expr::Kind::Slice: {
        const Value obj = eval(*e.args[0], f);
        Value parts[3];
        for (int k = 0; k < 3; ++k)
          if (e.args[static_cast<size_t>(k) + 1]) parts[k] = eval(*e.args[static_cast<size_t>(k) + 1], f);
        return slice(obj, parts[0], parts[1], parts[2]);
      }
      case Expr::Kind::Call: {
        const Value callee = eval(*e.args[0], f);
        CallArgs a = eval_args(e, f);
        if (callee.is_undefined()) undefined_error(callee);
        if (!callee.is_callable()) type_error(fmt::format("'{}' object is not callable", callee.type_name()));
        return callee.as_callable().fn(a);
      }
      case Expr::Kind::Filter:
        return apply_filter_chain(e, nullptr, f);
      case Expr::Kind::Test: {
        const Value v = eval(*e.args[0], f);
        CallArgs a = eval_args(e, f);
        return Value(apply_test(e.name, v, a) != e.negated);
      }
      case Expr::Kind::Unary: {
        const Value v = eval(*e.args[0], f);
        if (v.is_undefined()) undefined_error(v);
        if (!v.is_number()) type_error(fmt::format("bad operand type for unary {}: '{}'", e.name, v.type_name()));
        if (e.name == "+") return v.is_float() ? v : Value(v.integer());
        if (v.is_float()) return Value(-v.as_float());
        return Value(checked(0, v.integer(), '-'));
      }
      case Expr::Kind::Binary:
        return binary_op(e.name, eval(*e.args[0], f), eval(*e.args[1], f));
      case Expr::Kind::Compare: {
        Value left = eval(*e.args[0], f);
        for (size_t k = 0; k < e.ops.size(); ++k) {
          Value right = eval(*e.args[k + 1], f);
          if (!compare_op(e.ops[k], left, right)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::And: {
        Value l = eval(*e.args[0], f);
        return l.truthy() ? eval(*e.args[1], f) : l;
      }
      case Expr::Kind::Or: {
        Value l = eval(*e.args[0], f);
        return l.truthy() ? l : eval(*e.args[1], f);
      }
      case Expr::Kind::Not:
        return Value(!eval(*e.args[0], f).truthy());
      case Expr::Kind::Cond:
        if (eval(*e.args[0], f).truthy()) return eval(*e.args[1], f);
        return e.args[2] ? eval(*e.args[2], f) : Value::undefined("the else branch of an inline if");
    }
    return Value();
  }

  CallArgs eval_args(const Expr& e, const FramePtr& f) {
    CallArgs a;
    for (size_t k = 1; k < e.args.size(); ++k) a.positional.push_back(eval(*e.args[k], f));
    for (const auto& [key, x] : e.kwargs) a.keyword.emplace_back(key, eval(*x, f));
    return a;
  }

  // A filter expression; `operand` feeds the innermost filter of a chain written without one
  // (filter blocks, block sets).
  Value apply_filter_chain(const Expr& e, const Value* operand, const FramePtr& f) {
    Value v;
    if (!e.args[0]) {
      if (!operand) type_error("a filter without a value");
      v = *operand;
    } else if (operand && e.args[0]->kind == Expr::Kind::Filter) {
      v = apply_filter_chain(*e.args[0], operand, f);
    } else {
      v = eval(*e.args[0], f);
    }
    CallArgs a = eval_args(e, f);
    return apply_filter(e.name, v, a);
  }

  static Value getattr(const Value& obj, const std::string& name) {
    if (obj.is_undefined()) undefined_error(obj);
    if (Value m = method(obj, name); !m.is_undefined()) return m;
    if (obj.is_object()) {
      if (const Value* v = obj.as_object().find(name)) return *v;
      return Value::undefined(fmt::format("'{}' has no attribute '{}' (it", obj.type_name(), name) + ")");
    }
    return Value::undefined(fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
  }

  static Value getitem(const Value& obj, const Value& key) {
    if (obj.is_undefined()) undefined_error(obj);
    if (key.is_integral() && (obj.is_array() || obj.is_string())) {
      if (obj.is_array()) {
        const auto& items = obj.as_array().items;
        int64_t i = key.integer();
        if (i < 0) i += static_cast<int64_t>(items.size());
        if (i < 0 || i >= static_cast<int64_t>(items.size())) return Value::undefined("a list index out of range");
        return items[static_cast<size_t>(i)];
      }
      const std::u32string u = to_u32(obj.as_string());
      int64_t i = key.integer();
      if (i < 0) i += static_cast<int64_t>(u.size());
      if (i < 0 || i >= static_cast<int64_t>(u.size())) return Value::undefined("a string index out of range");
      return Value(from_u32(std::u32string_view(u).substr(static_cast<size_t>(i), 1)));
    }
    if (obj.is_object() && key.is_string()) {
      if (const Value* v = obj.as_object().find(key.as_string())) return *v;
      if (Value m = method(obj, key.as_string()); !m.is_undefined()) return m;
      return Value::undefined(fmt::format("'{} object' has no attribute '{}'", obj.type_name(), key.as_string()));
    }
    if (key.is_string()) return getattr(obj, key.as_string());
    return Value::undefined(fmt::format("'{} object' has no element {}", obj.type_name(), py_repr(key)));
  }

  static Value slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
    if (obj.is_undefined()) undefined_error(obj);
    if (obj.is_array()) {
      const auto& items = obj.as_array().items;
      std::vector<Value> out;
      for (size_t i : slice_indices(static_cast<int64_t>(items.size()), start, stop, step)) out.push_back(items[i]);
      return Value::list(std::move(out), obj.as_array().tuple);
    }
    if (obj.is_string()) {
      const std::u32string u = to_u32(obj.as_string());
      std::u32string out;
      for (size_t i : slice_indices(static_cast<int64_t>(u.size()), start, stop, step)) out.push_back(u[i]);
      return Value(from_u32(out));
    }
    type_error(fmt::format("'{}' object is not subscriptable", obj.type_name()));
  }

  // A bound method of a str, dict or list ('abc'.upper), or undefined.
  static Value method(const Value& obj, const std::string& name) {
    static const char* const mutating[] = {"append", "extend",  "insert", "pop",        "remove", "clear",
                                           "sort",   "reverse", "update", "setdefault", "popitem"};
    if (obj.is_string()) return string_method(obj.as_string(), name);
    if (obj.is_object() && !obj.as_object().is_namespace) {
      const Value self = obj;
      if (name == "items" || name == "keys" || name == "values")
        return make_callable("dict." + name, [self, name](CallArgs& a) {
          if (!a.positional.empty() || !a.keyword.empty())
            type_error(fmt::format("dict.{}() takes no arguments", name));
          std::vector<Value> out;
          for (const auto& [k, v] : self.as_object().items) {
            if (name == "items")
              out.push_back(Value::list({Value(k), v}, true));
            else if (name == "keys")
              out.emplace_back(k);
            else
              out.push_back(v);
          }
          return Value::list(std::move(out));
        });
      if (name == "get")
        return make_callable("dict.get", [self](CallArgs& a) {
          const Params p("get", a, {"key", "default"});
          const Value* key = p.get(0);
          if (!key) type_error("get expected at least 1 argument, got 0");
          const Value* v = key->is_string() ? self.as_object().find(key->as_string()) : nullptr;
          return v ? *v : p.get(1, Value(None{}));
        });
      if (name == "copy")
        return make_callable("dict.copy", [self](CallArgs&) { return make_object(self.as_object().items); });
    }
    if (obj.is_array()) {
      const Value self = obj;
      if (name == "index" || name == "count")
        return make_callable("list." + name, [self, name](CallArgs& a) -> Value {
          if (a.positional.size() != 1) type_error(fmt::format("list.{}() takes exactly one argument", name));
          int64_t n = 0;
          const auto& items = self.as_array().items;
          for (size_t k = 0; k < items.size(); ++k) {
            if (!py_equal(items[k], a.positional[0])) continue;
            if (name == "index") return Value(static_cast<int64_t>(k));
            ++n;
          }
          if (name == "index") type_error(fmt::format("{} is not in list", py_repr(a.positional[0])));
          return Value(n);
        });
    }
    if (obj.is_array() || (obj.is_object() && !obj.as_object().is_namespace))
      for (const char* m : mutating)
        if (name == m)
          type_error(fmt::format("access to attribute '{}' of '{}' object is unsafe", name, obj.type_name()));
    return Value();
  }

  static Value string_method(const std::string& s, const std::string& name) {
    using Fn = std::function<Value(const std::string&, CallArgs&)>;
    static const std::unordered_map<std::string, Fn> methods = {
        {"strip", [](const std::string& s, CallArgs& a) { return strip_method(s, a, "strip", true, true); }},
        {"lstrip", [](const std::string& s, CallArgs& a) { return strip_method(s, a, "lstrip", true, false); }},
        {"rstrip", [](const std::string& s, CallArgs& a) { return strip_method(s, a, "rstrip", false, true); }},
        {"split", [](const std::string& s, CallArgs& a) { return split_method(s, a, false); }},
        {"rsplit", [](const std::string& s, CallArgs& a) { return split_method(s, a, true); }},
        {"startswith", [](const std::string& s, CallArgs& a) { return affix_method(s, a, true); }},
        {"endswith", [](const std::string& s, CallArgs& a) { return affix_method(s, a, false); }},
        {"upper", [](const std::string& s, CallArgs& a) { return no_args(a, "upper", py_upper(s)); }},
        {"lower", [](const std::string& s, CallArgs& a) { return no_args(a, "lower", py_lower(s)); }},
        {"title", [](const std::string& s, CallArgs& a) { return no_args(a, "title", py_title(s)); }},
        {"capitalize", [](const std::string& s, CallArgs& a) { return no_args(a, "capitalize", py_capitalize(s)); }},
        {"splitlines",
         [](const std::string& s, CallArgs& a) {
           std::vector<Value> out;
           for (auto& l : py_splitlines(s)) out.emplace_back(std::move(l));
           return no_args(a, "splitlines", Value::list(std::move(out)));
         }},
        {"replace",
         [](const std::string& s, CallArgs& a) {
           const Params p("replace", a, {"old", "new", "count"});
           if (!p.get(0) || !p.get(1)) type_error("replace expected at least 2 arguments");
           const Value count = p.get(2, Value(int64_t{-1}));
           return Value(py_replace(s, str_arg(*p.get(0), "replace() argument 1"),
                                   str_arg(*p.get(1), "replace() argument 2"), count.integer()));
         }},
        {"find", [](const std::string& s, CallArgs& a) { return find_method(s, a, false); }},
        {"rfind", [](const std::string& s, CallArgs& a) { return find_method(s, a, true); }},
        {"count",
         [](const std::string& s, CallArgs& a) {
           const Params p("count", a, {"sub"});
           if (!p.get(0)) type_error("count() takes at least 1 argument (0 given)");
           return Value(py_count(s, str_arg(*p.get(0), "count() argument")));
         }},
        {"join",
         [](const std::string& s, CallArgs& a) {
           const Params p("join", a, {"iterable"});
           if (!p.get(0)) type_error("join() takes exactly one argument (0 given)");
           std::string out;
           bool first = true;
           for (const auto& item : iterate(*p.get(0))) {
             if (!first) out += s;
             first = false;
             out += str_arg(item, "sequence item");
             if (out.size() > kMaxString) type_error("join: the result would be too large");
           }
           return Value(std::move(out));
         }},
        {"zfill",
         [](const std::string& s, CallArgs& a) {
           const Params p("zfill", a, {"width"});
           const int64_t width = p.get(0, Value(int64_t{0})).integer();
           const int64_t n = static_cast<int64_t>(cp_count(s));
           if (width <= n) return Value(s);
           const size_t sign = !s.empty() && (s[0] == '+' || s[0] == '-') ? 1 : 0;
           return Value(s.substr(0, sign) +
                        std::string(static_cast<size_t>(std::min<int64_t>(width - n, kMaxRange)), '0') +
                        s.substr(sign));
         }},
        {"ljust", [](const std::string& s, CallArgs& a) { return pad_method(s, a, "ljust"); }},
        {"rjust", [](const std::string& s, CallArgs& a) { return pad_method(s, a, "rjust"); }},
        {"center", [](const std::string& s, CallArgs& a) { return pad_method(s, a, "center"); }},
        {"removeprefix",
         [](const std::string& s, CallArgs& a) {
           const Params p("removeprefix", a, {"prefix"});
           const std::string x = str_arg(p.get(0, Value("")), "removeprefix() argument");
           return Value(s.compare(0, x.size(), x) == 0 ? s.substr(x.size()) : s);
         }},
        {"removesuffix",
         [](const std::string& s, CallArgs& a) {
           const Params p("removesuffix", a, {"suffix"});
           const std::string x = str_arg(p.get(0, Value("")), "removesuffix() argument");
           const bool ends = !x.empty() && x.size() <= s.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
           return Value(ends ? s.substr(0, s.size() - x.size()) : s);
         }},
        {"partition", [](const std::string& s, CallArgs& a) { return partition_method(s, a, false); }},
        {"rpartition", [](const std::string& s, CallArgs& a) { return partition_method(s, a, true); }},
        {"swapcase",
         [](const std::string& s, CallArgs& a) {
           std::string out;
           size_t i = 0;
           while (i < s.size()) {
             const char32_t c = tok::next_code_point(s, i);
             const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
             tok::append_utf8(out, cat == UTF8PROC_CATEGORY_LU   ? lower_cp(c)
                                   : cat == UTF8PROC_CATEGORY_LL ? upper_cp(c)
                                                                 : c);
           }
           return no_args(a, "swapcase", Value(std::move(out)));
         }},
        {"casefold",
         [](const std::string& s, CallArgs& a) {
           utf8proc_uint8_t* folded = nullptr;
           const auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                       static_cast<utf8proc_ssize_t>(s.size()), &folded,
                                       static_cast<utf8proc_option_t>(UTF8PROC_CASEFOLD));
           if (n < 0) type_error("casefold: invalid text");
           std::string out(reinterpret_cast<const char*>(folded), static_cast<size_t>(n));
           std::free(folded);
           return no_args(a, "casefold", Value(std::move(out)));
         }},
        {"isdigit", [](const std::string& s, CallArgs& a) { return no_args(a, "isdigit", Value(char_class(s, 'd'))); }},
        {"isalpha", [](const std::string& s, CallArgs& a) { return no_args(a, "isalpha", Value(char_class(s, 'a'))); }},
        {"isalnum", [](const std::string& s, CallArgs& a) { return no_args(a, "isalnum", Value(char_class(s, 'n'))); }},
        {"isspace", [](const std::string& s, CallArgs& a) { return no_args(a, "isspace", Value(char_class(s, 's'))); }},
        {"islower",
         [](const std::string& s, CallArgs& a) { return no_args(a, "islower", Value(case_test(s, false))); }},
        {"isupper", [](const std::string& s, CallArgs& a) { return no_args(a, "isupper", Value(case_test(s, true))); }},
    };
    const auto it = methods.find(name);
    if (it == methods.end()) return Value();
    const Fn fn = it->second;
    return make_callable("str." + name, [s, fn](CallArgs& a) { return fn(s, a); });
  }

  static Value no_args(const CallArgs& a, const char* name, Value v) {
    if (!a.positional.empty() || !a.keyword.empty()) type_error(fmt::format("str.{}() takes no arguments", name));
    return v;
  }

  static Value pad_method(const std::string& s, CallArgs& a, const char* name) {
    const Params p(name, a, {"width", "fillchar"});
    const int64_t width = p.get(0, Value(int64_t{0})).integer();
    const std::string fill = str_arg(p.get(1, Value(" ")), "fill character");
    if (cp_count(fill) != 1) type_error("The fill character must be exactly one character long");
    const int64_t n = static_cast<int64_t>(cp_count(s));
    if (width <= n) return Value(s);
    const int64_t pad = std::min<int64_t>(width - n, static_cast<int64_t>(kMaxRange));
    const std::string_view nm(name);
    const int64_t left = nm == "ljust" ? 0 : nm == "rjust" ? pad : pad / 2 + (pad & width & 1);
    std::string out;
    for (int64_t k = 0; k < left; ++k) out += fill;
    out += s;
    for (int64_t k = left; k < pad; ++k) out += fill;
    return Value(std::move(out));
  }

  static Value partition_method(const std::string& s, CallArgs& a, bool from_right) {
    const Params p(from_right ? "rpartition" : "partition", a, {"sep"});
    const std::string sep = str_arg(p.get(0, Value("")), "separator");
    if (sep.empty()) type_error("empty separator");
    const size_t at = from_right ? s.rfind(sep) : s.find(sep);
    if (at == std::string::npos)
      return from_right ? Value::list({Value(""), Value(""), Value(s)}, true)
                        : Value::list({Value(s), Value(""), Value("")}, true);
    return Value::list({Value(s.substr(0, at)), Value(sep), Value(s.substr(at + sep.size()))}, true);
  }

  static Value strip_method(const std::string& s, CallArgs& a, const char* name, bool left, bool right) {
    const Params p(name, a, {"chars"});
    const Value chars = p.get(0, Value(None{}));
    if (chars.is_none()) return Value(py_strip(s, nullptr, left, right));
    const std::string c = str_arg(chars, fmt::format("{} arg", name));
    return Value(py_strip(s, &c, left, right));
  }

  static Value split_method(const std::string& s, CallArgs& a, bool from_right) {
    const Params p(from_right ? "rsplit" : "split", a, {"sep", "maxsplit"});
    const Value sep = p.get(0, Value(None{}));
    const Value maxsplit = p.get(1, Value(int64_t{-1}));
    if (!maxsplit.is_integral()) type_error("maxsplit must be an integer");
    if (sep.is_none()) return Value::list(py_split(s, nullptr, maxsplit.integer(), from_right));
    const std::string sp = str_arg(sep, "separator");
    return Value::list(py_split(s, &sp, maxsplit.integer(), from_right));
  }

  static Value affix_method(const std::string& s, CallArgs& a, bool prefix) {
    const Params p(prefix ? "startswith" : "endswith", a, {"prefix"});
    const Value* arg = p.get(0);
    if (!arg) type_error(fmt::format("{}() takes at least 1 argument (0 given)", prefix ? "startswith" : "endswith"));
    auto test = [&](const Value& v) {
      const std::string x = str_arg(v, prefix ? "startswith first arg" : "endswith first arg");
      if (x.size() > s.size()) return false;
      return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
    };
    if (arg->is_array() && arg->as_array().tuple) {
      for (const auto& v : arg->as_array().items)
        if (test(v)) return Value(true);
      return Value(false);
    }
    return Value(test(*arg));
  }

  static Value find_method(const std::string& s, CallArgs& a, bool from_right) {
    const Params p(from_right ? "rfind" : "find", a, {"sub"});
    if (!p.get(0)) type_error("find() takes at least 1 argument (0 given)");
    const std::string sub = str_arg(*p.get(0), "find() argument");
    const size_t at = from_right ? s.rfind(sub) : s.find(sub);
    if (at == std::string::npos) return Value(int64_t{-1});
    return Value(static_cast<int64_t>(cp_count(std::string_view(s).substr(0, at))));
  }

  static bool char_class(const std::string& s, char cls) {
    if (s.empty()) return false;
    size_t i = 0;
    while (i < s.size()) {
      const char32_t c = tok::next_code_point(s, i);
      const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      const bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
      const bool digit = cat == UTF8PROC_CATEGORY_ND;
      const bool ok = cls == 'd'   ? digit
                      : cls == 'a' ? alpha
                      : cls == 'n' ? alpha || digit || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO
                                   : py_isspace(c);
      if (!ok) return false;
    }
    return true;
  }

  static bool case_test(const std::string& s, bool upper) {
    bool cased = false;
    size_t i = 0;
    while (i < s.size()) {
      const char32_t c = tok::next_code_point(s, i);
      const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(c));
      if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) {
        if (!upper) return false;
        cased = true;
      } else if (cat == UTF8PROC_CATEGORY_LL) {
        if (upper) return false;
        cased = true;
      }
    }
    return cased;
  }

  // ---- filters ----

  static std::string text_of(const Value& v) { return py_str(v); }

  // An item's attribute for the attribute= arguments ("a.b" and "0" paths as in Jinja2).
  static Value attribute_path(const Value& item, const Value& path) {
    if (path.is_integral()) return getitem(item, path);
    static const std::string dot = ".";
    Value v = item;
    for (const Value& part : py_split(str_arg(path, "attribute"), &dot, -1, false)) {
      const std::string& name = part.as_string();
      const bool digits =
          !name.empty() && std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; });
      v = digits && name.size() < 18 ? getitem(v, Value(static_cast<int64_t>(std::stoll(name))))
                                     : getitem(v, Value(name));
      if (v.is_undefined()) return v;
    }
    return v;
  }

  // A sort key: lowercased strings when not case-sensitive.
  static Value sort_key(const Value& v, bool case_sensitive) {
    if (!case_sensitive && v.is_string()) return Value(py_lower(v.as_string()));
    return v;
  }

  Value apply_filter(const std::string& name, const Value& v, CallArgs& a) {
    if (name == "trim") {
      const Params p("trim", a, {"chars"});
      const Value chars = p.get(0, Value(None{}));
      if (chars.is_none()) return Value(py_strip(text_of(v), nullptr, true, true));
      const std::string c = str_arg(chars, "trim chars");
      return Value(py_strip(text_of(v), &c, true, true));
    }
    if (name == "tojson") {
      const Params p("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
      JsonStyle st;
      st.ensure_ascii = p.get(0, Value(false)).truthy();
      const Value indent = p.get(1, Value(None{}));
      if (!indent.is_none()) {
        st.indent = true;
        st.item_separator = ",";
        if (indent.is_string())
          st.indent_unit = indent.as_string();
        else
          st.indent_unit =
              std::string(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(indent.integer(), 64))), ' ');
      }
      const Value seps = p.get(2, Value(None{}));
      if (!seps.is_none()) {
        const std::vector<Value> parts = iterate(seps);
        if (parts.size() != 2) type_error("tojson separators must be a pair (item separator, key separator)");
        st.item_separator = str_arg(parts[0], "tojson item separator");
        st.key_separator = str_arg(parts[1], "tojson key separator");
      }
      st.sort_keys = p.get(3, Value(false)).truthy();
      return Value(py_json_dumps(v, st));
    }
    if (name == "length" || name == "count") {
      Params("length", a, {});
      return Value(py_len(v));
    }
    if (name == "upper" || name == "lower" || name == "capitalize") {
      Params(name, a, {});
      const std::string s = text_of(v);
      return Value(name == "upper" ? py_upper(s) : name == "lower" ? py_lower(s) : py_capitalize(s));
    }
    if (name == "title") {
      Params("title", a, {});
      // Jinja2's own title: words begin after '-', whitespace and opening brackets.
      const std::u32string u = to_u32(text_of(v));
      std::u32string out;
      bool word_start = true;
      for (char32_t c : u) {
        const bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
        if (sep) {
          out.push_back(c);
          word_start = true;
        } else {
          out.push_back(word_start ? upper_cp(c) : lower_cp(c));
          word_start = false;
        }
      }
      return Value(from_u32(out));
    }
    if (name == "default" || name == "d") {
      const Params p("default", a, {"default_value", "boolean"});
      const bool boolean = p.get(1, Value(false)).truthy();
      if (v.is_undefined() || (boolean && !v.truthy())) return p.get(0, Value(""));
      return v;
    }
    if (name == "first" || name == "last") {
      Params(name, a, {});
      const std::vector<Value> items = iterate(v);
      if (items.empty()) return Value::undefined(fmt::format("no {} item, sequence was empty", name));
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Params p("join", a, {"d", "attribute"});
      const std::string sep = text_of(p.get(0, Value("")));
      const Value attr = p.get(1, Value(None{}));
      std::string out;
      bool first = true;
      for (const auto& item : iterate(v)) {
        if (!first) out += sep;
        first = false;
        out += text_of(attr.is_none() ? item : attribute_path(item, attr));
        if (out.size() > kMaxString) type_error("join: the result would be too large");
      }
      return Value(std::move(out));
    }
    if (name == "list") {
      Params("list", a, {});
      return Value::list(iterate(v));
    }
    if (name == "string" || name == "safe") {
      Params(name, a, {});
      return Value(text_of(v));
    }
    if (name == "e" || name == "escape" || name == "forceescape") {
      Params(name, a, {});
      return Value(html_escape(text_of(v)));
    }
    if (name == "int") {
      const Params p("int", a, {"default", "base"});
      const Value dflt = p.get(0, Value(int64_t{0}));
      const int base = static_cast<int>(p.get(1, Value(int64_t{10})).integer());
      if (v.is_undefined()) undefined_error(v);
      if (v.is_integral()) return Value(v.integer());
      if (v.is_float()) {
        const double d = v.as_float();
        if (!std::isfinite(d)) return dflt;
        if (!(d > -9.2e18 && d < 9.2e18))
          type_error("integer overflow (Python integers are unbounded; this engine's are 64-bit)");
        return Value(static_cast<int64_t>(d));
      }
      if (v.is_string()) {
        std::string s = py_strip(v.as_string(), nullptr, true, true);
        s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
        try {
          size_t used = 0;
          const long long x = std::stoll(s, &used, base);
          if (used == s.size() && !s.empty()) return Value(static_cast<int64_t>(x));
        } catch (const std::exception&) {
        }
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size() && std::isfinite(d)) {
          if (!(d > -9.2e18 && d < 9.2e18))
            type_error("integer overflow (Python integers are unbounded; this engine's are 64-bit)");
          return Value(static_cast<int64_t>(d));
        }
      }
      return dflt;
    }
    if (name == "float") {
      const Params p("float", a, {"default"});
      const Value dflt = p.get(0, Value(0.0));
      if (v.is_undefined()) undefined_error(v);
      if (v.is_number()) return Value(v.number());
      if (v.is_string()) {
        const std::string s = py_strip(v.as_string(), nullptr, true, true);
        char* end = nullptr;
        const double d = std::strtod(s.c_str(), &end);
        if (!s.empty() && end == s.c_str() + s.size()) return Value(d);
      }
      return dflt;
    }
    if (name == "abs") {
      Params("abs", a, {});
      if (v.is_float()) return Value(std::fabs(v.as_float()));
      if (v.is_integral()) return Value(v.integer() < 0 ? checked(0, v.integer(), '-') : v.integer());
      type_error(fmt::format("bad operand type for abs(): '{}'", v.type_name()));
    }
    if (name == "round") {
      const Params p("round", a, {"precision", "method"});
      const int64_t precision = p.get(0, Value(int64_t{0})).integer();
      const std::string method = str_arg(p.get(1, Value("common")), "round method");
      if (method != "common" && method != "ceil" && method != "floor")
        type_error("method must be 'common', 'ceil' or 'floor'");
      if (!v.is_number()) type_error(fmt::format("type {} doesn't define __round__ method", v.type_name()));
      if (method == "common") {
        if (v.is_integral()) return Value(v.integer());  // round(int, n) keeps an int (n >= 0)
        if (precision < 0 || precision > 300) {
          const double scale = std::pow(10.0, static_cast<double>(-precision));
          return Value(std::nearbyint(v.number() / scale) * scale);
        }
        // Python rounds the exact binary value half to even, as printf does.
        const std::string s = fmt::format("{:.{}f}", v.number(), precision);
        return Value(std::strtod(s.c_str(), nullptr));
      }
      const double scale = std::pow(10.0, static_cast<double>(precision));
      const double x = v.number() * scale;
      return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
    }
    if (name == "replace") {
      const Params p("replace", a, {"old", "new", "count"});
      if (!p.get(0) || !p.get(1)) type_error("replace filter needs old and new");
      const Value count = p.get(2, Value(None{}));
      return Value(
          py_replace(text_of(v), text_of(*p.get(0)), text_of(*p.get(1)), count.is_none() ? -1 : count.integer()));
    }
    if (name == "items") {
      Params("items", a, {});
      if (v.is_undefined()) return Value::list({});
      if (!v.is_object() || v.as_object().is_namespace)
        type_error(fmt::format("can only get item pairs from a mapping, not {}", v.type_name()));
      std::vector<Value> out;
      for (const auto& [k, x] : v.as_object().items) out.push_back(Value::list({Value(k), x}, true));
      return Value::list(std::move(out));
    }
    if (name == "dictsort") {
      const Params p("dictsort", a, {"case_sensitive", "by", "reverse"});
      if (!v.is_object()) type_error("dictsort needs a mapping");
      const bool cs = p.get(0, Value(false)).truthy();
      const std::string by = str_arg(p.get(1, Value("key")), "dictsort by");
      if (by != "key" && by != "value") type_error("You can only sort by either \"key\" or \"value\"");
      const bool reverse = p.get(2, Value(false)).truthy();
      std::vector<std::pair<std::string, Value>> items = v.as_object().items;
      std::stable_sort(items.begin(), items.end(), [&](const auto& x, const auto& y) {
        const Value kx = sort_key(by == "key" ? Value(x.first) : x.second, cs);
        const Value ky = sort_key(by == "key" ? Value(y.first) : y.second, cs);
        return reverse ? py_compare(ky, kx) < 0 : py_compare(kx, ky) < 0;
      });
      std::vector<Value> out;
      for (auto& [k, x] : items) out.push_back(Value::list({Value(k), x}, true));
      return Value::list(std::move(out));
    }
    if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
      const bool by_attr = name.size() > 6;
      const bool keep_if = name[0] == 's';
      size_t k = 0;
      Value attr;
      if (by_attr) {
        if (a.positional.empty()) type_error(fmt::format("{}() needs an attribute", name));
        attr = a.positional[k++];
      }
      std::string test;
      if (k < a.positional.size()) test = str_arg(a.positional[k++], "test name");
      if (!test.empty() && !is_known_test(test)) type_error(fmt::format("no test named '{}'", test));
      CallArgs test_args;
      test_args.positional.assign(a.positional.begin() + static_cast<long>(k), a.positional.end());
      test_args.keyword = a.keyword;
      std::vector<Value> out;
      for (const auto& item : iterate(v)) {
        const Value x = by_attr ? attribute_path(item, attr) : item;
        const bool pass = test.empty() ? x.truthy() : apply_test(test, x, test_args);
        if (pass == keep_if) out.push_back(item);
      }
      return Value::list(std::move(out));
    }
    if (name == "map") {
      std::vector<Value> out;
      const Value* attr = nullptr;
      for (const auto& [key, x] : a.keyword)
        if (key == "attribute") attr = &x;
      if (attr) {
        Value dflt;
        for (const auto& [key, x] : a.keyword)
          if (key == "default")
            dflt = x;
          else if (key != "attribute")
            type_error(fmt::format("map() got an unexpected keyword argument '{}'", key));
        for (const auto& item : iterate(v)) {
          Value x = attribute_path(item, *attr);
          out.push_back(x.is_undefined() && !dflt.is_undefined() ? dflt : x);
        }
        return Value::list(std::move(out));
      }
      if (a.positional.empty()) type_error("map() needs a filter name or attribute=");
      const std::string filter = str_arg(a.positional[0], "map filter name");
      if (!is_known_filter(filter)) type_error(fmt::format("no filter named '{}'", filter));
      CallArgs rest;
      rest.positional.assign(a.positional.begin() + 1, a.positional.end());
      rest.keyword = a.keyword;
      for (const auto& item : iterate(v)) {
        CallArgs copy = rest;
        out.push_back(apply_filter(filter, item, copy));
      }
      return Value::list(std::move(out));
    }
    if (name == "unique") {
      const Params p("unique", a, {"case_sensitive", "attribute"});
      const bool cs = p.get(0, Value(false)).truthy();
      const Value attr = p.get(1, Value(None{}));
      std::vector<Value> out, seen;
      std::unordered_set<std::string> seen_strings;  // strings: hashed (the common case, and no n^2)
      for (const auto& item : iterate(v)) {
        const Value key = sort_key(attr.is_none() ? item : attribute_path(item, attr), cs);
        if (key.is_string()) {
          if (!seen_strings.insert(key.as_string()).second) continue;
        } else {
          if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return py_equal(s, key); })) continue;
          if (seen.size() >= 10000) type_error("unique: more than 10000 distinct non-string items");
          seen.push_back(key);
        }
        out.push_back(item);
      }
      return Value::list(std::move(out));
    }
    if (name == "reverse") {
      Params("reverse", a, {});
      if (v.is_string()) {
        std::u32string u = to_u32(v.as_string());
        std::reverse(u.begin(), u.end());
        return Value(from_u32(u));
      }
      std::vector<Value> items = iterate(v);
      std::reverse(items.begin(), items.end());
      return Value::list(std::move(items));
    }
    if (name == "sort") {
      const Params p("sort", a, {"reverse", "case_sensitive", "attribute"});
      const bool reverse = p.get(0, Value(false)).truthy();
      const bool cs = p.get(1, Value(false)).truthy();
      const Value attr = p.get(2, Value(None{}));
      std::vector<Value> items = iterate(v);
      std::vector<std::pair<Value, size_t>> keyed;
      // attribute="a,b" sorts by a, then b.
      std::vector<Value> attrs;
      if (attr.is_string()) {
        static const std::string comma = ",";
        attrs = py_split(attr.as_string(), &comma, -1, false);
      } else if (!attr.is_none()) {
        attrs = {attr};
      }
      for (size_t k = 0; k < items.size(); ++k) {
        if (attrs.size() <= 1) {
          keyed.emplace_back(sort_key(attrs.empty() ? items[k] : attribute_path(items[k], attrs[0]), cs), k);
          continue;
        }
        std::vector<Value> key;
        for (const auto& at : attrs) key.push_back(sort_key(attribute_path(items[k], at), cs));
        keyed.emplace_back(Value::list(std::move(key)), k);
      }
      std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
        return reverse ? py_compare(y.first, x.first) < 0 : py_compare(x.first, y.first) < 0;
      });
      std::vector<Value> out;
      for (auto& kv : keyed) out.push_back(items[kv.second]);
      return Value::list(std::move(out));
    }
    if (name == "min" || name == "max") {
      const Params p(name, a, {"case_sensitive", "attribute"});
      const bool cs = p.get(0, Value(false)).truthy();
      const Value attr = p.get(1, Value(None{}));
      const std::vector<Value> items = iterate(v);
      if (items.empty())
        return Value::undefined(fmt::format("no {} item, sequence was empty", name == "min" ? "smallest" : "largest"));
      size_t best = 0;
      for (size_t k = 1; k < items.size(); ++k) {
        const Value kb = sort_key(attr.is_none() ? items[best] : attribute_path(items[best], attr), cs);
        const Value kk = sort_key(attr.is_none() ? items[k] : attribute_path(items[k], attr), cs);
        const int c = py_compare(kk, kb);
        if (name == "min" ? c < 0 : c > 0) best = k;
      }
      return items[best];
    }
    if (name == "sum") {
      const Params p("sum", a, {"attribute", "start"});
      const Value attr = p.get(0, Value(None{}));
      Value acc = p.get(1, Value(int64_t{0}));
      if (acc.is_string()) type_error("sum() can't sum strings [use ''.join(seq) instead]");
      for (const auto& item : iterate(v)) acc = binary_op("+", acc, attr.is_none() ? item : attribute_path(item, attr));
      return acc;
    }
    if (name == "indent") {
      const Params p("indent", a, {"width", "first", "blank"});
      const Value width = p.get(0, Value(int64_t{4}));
      const std::string ind =
          width.is_string() ? width.as_string()
                            : std::string(static_cast<size_t>(std::clamp<int64_t>(width.integer(), 0, 1024)), ' ');
      const bool first = p.get(1, Value(false)).truthy(), blank = p.get(2, Value(false)).truthy();
      const std::vector<std::string> lines = py_splitlines(text_of(v) + "\n");
      std::string rv;
      for (size_t k = 0; k < lines.size(); ++k) {
        if (k) rv += "\n";
        if (k && (blank || !lines[k].empty())) rv += ind;
        rv += lines[k];
        if (rv.size() > kMaxString) type_error("indent: the result would be too large");
      }
      if (first) rv = ind + rv;
      return Value(std::move(rv));
    }
    if (name == "wordcount") {
      Params("wordcount", a, {});
      const std::string s = text_of(v);
      int64_t n = 0;
      bool in_word = false;
      size_t i = 0;
      while (i < s.size()) {
        const bool w = tok::is_word_char(tok::next_code_point(s, i));
        if (w && !in_word) ++n;
        in_word = w;
      }
      return Value(n);
    }
    if (name == "center") {
      const Params p("center", a, {"width"});
      const int64_t width = p.get(0, Value(int64_t{80})).integer();
      const std::string s = text_of(v);
      const int64_t len = static_cast<int64_t>(cp_count(s));
      if (width <= len) return Value(s);
      const int64_t pad = std::min<int64_t>(width - len, static_cast<int64_t>(kMaxRange));
      const int64_t left = pad / 2 + (pad & width & 1);
      return Value(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(pad - left), ' '));
    }
    if (name == "batch" || name == "slice") {
      const Params p(name, a, {name == "batch" ? "linecount" : "slices", "fill_with"});
      if (!p.get(0)) type_error(fmt::format("{}() needs a count", name));
      const int64_t count = p.get(0)->integer();
      if (count <= 0) type_error(fmt::format("{}() count must be positive", name));
      if (static_cast<uint64_t>(count) > kMaxRange) type_error(fmt::format("{}() count {} is too large", name, count));
      const Value* fill = p.get(1);
      const bool has_fill = fill && !fill->is_none();
      const std::vector<Value> items = iterate(v);
      std::vector<Value> out;
      if (name == "batch") {
        for (size_t k = 0; k < items.size(); k += static_cast<size_t>(count)) {
          std::vector<Value> row(
              items.begin() + static_cast<long>(k),
              items.begin() + static_cast<long>(std::min(items.size(), k + static_cast<size_t>(count))));
          while (has_fill && static_cast<int64_t>(row.size()) < count) row.push_back(*fill);
          out.push_back(Value::list(std::move(row)));
        }
      } else {
        // Jinja2's slice: `count` columns, the first (len % count) one item longer.
        const size_t n = items.size(), c = static_cast<size_t>(count), per = n / c, extra = n % c;
        size_t offset = 0;
        for (size_t k = 0; k < c; ++k) {
          const size_t start = offset + k * per;
          if (k < extra) ++offset;
          const size_t end = offset + (k + 1) * per;
          std::vector<Value> col(items.begin() + static_cast<long>(start), items.begin() + static_cast<long>(end));
          if (has_fill && k >= extra) col.push_back(*fill);
          out.push_back(Value::list(std::move(col)));
        }
      }
      return Value::list(std::move(out));
    }
    if (name == "truncate") {
      const Params p("truncate", a, {"length", "killwords", "end", "leeway"});
      const int64_t length = std::clamp<int64_t>(p.get(0, Value(int64_t{255})).integer(), INT32_MIN, INT32_MAX);
      const bool killwords = p.get(1, Value(false)).truthy();
      const std::u32string end = to_u32(text_of(p.get(2, Value("..."))));
      const int64_t leeway = std::clamp<int64_t>(p.get(3, Value(int64_t{5})).integer(), INT32_MIN, INT32_MAX);
      if (length < static_cast<int64_t>(end.size()))
        type_error(fmt::format("expected length >= {}, got {}", end.size(), length));
      if (leeway < 0) type_error(fmt::format("expected leeway >= 0, got {}", leeway));
      const std::u32string u = to_u32(text_of(v));
      if (static_cast<int64_t>(u.size()) <= length + leeway) return Value(text_of(v));
      std::u32string head = u.substr(0, static_cast<size_t>(length) - end.size());
      if (!killwords) {
        const size_t sp = head.rfind(U' ');
        if (sp != std::u32string::npos) head.resize(sp);
      }
      return Value(from_u32(head + end));
    }
    if (name == "attr") {
      const Params p("attr", a, {"name"});
      if (!p.get(0)) type_error("attr() needs a name");
      // Jinja2's attr looks up attributes only: a dict's methods, a namespace's values.
      if (v.is_undefined()) undefined_error(v);
      const std::string attr = str_arg(*p.get(0), "attribute name");
      if (Value m = method(v, attr); !m.is_undefined()) return m;
      if (v.is_object() && v.as_object().is_namespace)
        if (const Value* x = v.as_object().find(attr)) return *x;
      return Value::undefined(fmt::format("'{} object' has no attribute '{}'", v.type_name(), attr));
    }
    type_error(fmt::format("no filter named '{}'", name));
  }

  // ---- tests ----

  static bool apply_test(const std::string& name, const Value& v, CallArgs& a) {
    auto arg = [&](const char* what) -> const Value& {
      if (a.positional.empty()) type_error(fmt::format("test '{}' needs an argument ({})", name, what));
      return a.positional[0];
    };
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "string") return v.is_string();
    if (name == "number") return v.is_number();
    if (name == "integer") return v.is_int();
    if (name == "float") return v.is_float();
    if (name == "boolean") return v.is_bool();
    if (name == "true") return v.is_bool() && v.as_bool();
    if (name == "false") return v.is_bool() && !v.as_bool();
    if (name == "mapping") return v.is_object() && !v.as_object().is_namespace;
    if (name == "iterable")
      return v.is_string() || v.is_array() || (v.is_object() && !v.as_object().is_namespace) || v.is_undefined();
    if (name == "sequence")
      return v.is_string() || v.is_array() || (v.is_object() && !v.as_object().is_namespace) || v.is_undefined();
    if (name == "callable") return v.is_callable() || v.is_undefined();
    if (name == "odd" || name == "even") {
      if (v.is_undefined()) undefined_error(v);
      const Value m = binary_op("%", v, Value(int64_t{2}));
      return py_equal(m, Value(int64_t{name == "odd" ? 1 : 0}));
    }
    if (name == "divisibleby") {
      if (v.is_undefined()) undefined_error(v);
      return py_equal(binary_op("%", v, arg("num")), Value(int64_t{0}));
    }
    if (name == "eq" || name == "equalto" || name == "==") return py_equal(v, arg("other"));
    if (name == "ne" || name == "!=") return !py_equal(v, arg("other"));
    if (name == "lt" || name == "lessthan" || name == "<") return compare_op("<", v, arg("other"));
    if (name == "le" || name == "<=") return compare_op("<=", v, arg("other"));
    if (name == "gt" || name == "greaterthan" || name == ">") return compare_op(">", v, arg("other"));
    if (name == "ge" || name == ">=") return compare_op(">=", v, arg("other"));
    if (name == "in") return py_contains(arg("seq"), v);
    if (name == "sameas") {
      const Value& o = arg("other");
      if (v.is_none() || v.is_bool() || o.is_none() || o.is_bool())
        return v.storage().index() == o.storage().index() && py_equal(v, o);
      if (v.is_array() && o.is_array()) return &v.as_array() == &o.as_array();
      if (v.is_object() && o.is_object()) return &v.as_object() == &o.as_object();
      return v.storage().index() == o.storage().index() && py_equal(v, o);
    }
    if (name == "lower" || name == "upper") return case_test(py_str(v), name == "upper");
    if (name == "escaped") return false;
    if (name == "filter") return v.is_string() && is_known_filter(v.as_string());
    if (name == "test") return v.is_string() && is_known_test(v.as_string());
    type_error(fmt::format("no test named '{}'", name));
  }

  FramePtr root_;
  int depth_ = 0;
  // Namespaces can hold themselves (ns.me = ns) or each other: their values are dropped when
  // the render ends, so such cycles are freed.
  mutable std::vector<std::weak_ptr<Object>> namespaces_;
  int64_t steps_ = 0;  // statements and expressions evaluated (see kMaxSteps)
  int nesting_ = 0;    // evaluation recursion (see kMaxRecursion)

 public:
  ~Renderer() {
    for (auto& w : namespaces_)
      if (auto o = w.lock()) o->items.clear();
  }
};

}  // namespace

bool is_known_filter(std::string_view name) {
  return std::find(std::begin(kFilters), std::end(kFilters), name) != std::end(kFilters);
}

bool is_known_test(std::string_view name) {
  return std::find(std::begin(kTests), std::end(kTests), name) != std::end(kTests);
}

struct Template::Impl {
  Body body;
};

Template::Template(std::string_view source) : impl_(std::make_unique<Impl>()) {
  if (tok::valid_utf8(source).size() != source.size() || tok::valid_utf8(source) != source)
    throw Error(ExitCode::BadInput, "the template is not valid UTF-8");
  try {
    impl_->body = parse_template(source);
  } catch (const RenderError& e) {
    throw Error(ExitCode::BadInput, e.what());
  }
}

Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;
Template::~Template() = default;

std::string Template::render(const std::vector<std::pair<std::string, Value>>& variables) const {
  Renderer r(variables);
  try {
    return r.run(impl_->body);
  } catch (const RenderError& e) {
    throw Error(ExitCode::BadInput, e.what());
  }
}

}  // namespace slmops::jinja
