#include "tokenizers/jinja/value.h"

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>

#include "ir/error.h"
#include "tokenizers/unicode.h"

namespace slmops::jinja {

[[noreturn]] void too_deep() {
  throw RenderError(fmt::format("lists and dicts nested deeper than {} levels", kMaxNesting));
}

Value Value::list(std::vector<Value> items, bool tuple) {
  auto a = std::make_shared<Array>();
  for (const Value& v : items) a->depth = std::max(a->depth, v.depth() + 1);
  if (a->depth > kMaxNesting) too_deep();
  a->items = std::move(items);
  a->tuple = tuple;
  return Value(std::shared_ptr<const Array>(std::move(a)));
}

int Value::depth() const {
  if (is_array()) return as_array().depth;
  if (is_object()) return as_object().depth;
  return 0;
}

double Value::number() const {
  if (is_float()) return as_float();
  if (is_int()) return static_cast<double>(as_int());
  if (is_bool()) return as_bool() ? 1.0 : 0.0;
  throw RenderError(fmt::format("expected a number, got {}", type_name()));
}

int64_t Value::integer() const {
  if (is_int()) return as_int();
  if (is_bool()) return as_bool() ? 1 : 0;
  throw RenderError(fmt::format("expected an integer, got {}", type_name()));
}

bool Value::truthy() const {
  return std::visit(
      [](const auto& x) -> bool {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Undefined> || std::is_same_v<T, None>)
          return false;
        else if constexpr (std::is_same_v<T, bool>)
          return x;
        else if constexpr (std::is_same_v<T, int64_t>)
          return x != 0;
        else if constexpr (std::is_same_v<T, double>)
          return x != 0.0;
        else if constexpr (std::is_same_v<T, std::shared_ptr<const std::string>>)
          return !x->empty();
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Array>>)
          return !x->items.empty();
        else if constexpr (std::is_same_v<T, std::shared_ptr<Object>>)
          return x->is_namespace || !x->items.empty();
        else
          return true;
      },
      v_);
}

std::string Value::type_name() const {
  if (is_undefined()) return "Undefined";
  if (is_none()) return "NoneType";
  if (is_bool()) return "bool";
  if (is_int()) return "int";
  if (is_float()) return "float";
  if (is_string()) return "str";
  if (is_array()) return as_array().tuple ? "tuple" : "list";
  if (is_object()) return as_object().is_namespace ? "Namespace" : "dict";
  return "function";
}

const Value* Object::find(std::string_view key) const {
  for (const auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void Object::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      old = std::move(v);
      return;
    }
  items.emplace_back(key, std::move(v));
}

Value make_object(std::vector<std::pair<std::string, Value>> items, bool is_namespace) {
  auto o = std::make_shared<Object>();
  o->is_namespace = is_namespace;
  for (const auto& kv : items) o->depth = std::max(o->depth, kv.second.depth() + 1);
  if (o->depth > kMaxNesting) too_deep();
  for (auto& [k, v] : items) o->set(k, std::move(v));  // a repeated key keeps its first place, as in a dict
  return Value(std::move(o));
}

Value make_callable(std::string name, std::function<Value(CallArgs&)> fn) {
  return Value(std::make_shared<const Callable>(Callable{std::move(name), std::move(fn)}));
}

bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);  // shortest round trip
  std::string_view s(buf, static_cast<size_t>(r.ptr - buf));
  std::string out;
  if (s.front() == '-') {
    out.push_back('-');
    s.remove_prefix(1);
  }
  const size_t e = s.find('e');
  std::string digits;
  for (char c : s.substr(0, e))
    if (c != '.') digits.push_back(c);
  int exp10 = 0;
  std::from_chars(s.data() + e + 1 + (s[e + 1] == '+' ? 1 : 0), s.data() + s.size(), exp10);
  const int decpt = exp10 + 1;  // the decimal point sits after `decpt` digits
  const int n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
    } else if (decpt >= n) {
      out += digits + std::string(static_cast<size_t>(decpt - n), '0') + ".0";
    } else {
      out += digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (n > 1) out += "." + digits.substr(1);
  out += fmt::format("e{}{:02d}", exp10 < 0 ? '-' : '+', std::abs(exp10));
  return out;
}

namespace {

bool py_isprintable(char32_t cp) {
  if (cp == ' ') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
    case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

std::string repr_string(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  size_t i = 0;
  while (i < s.size()) {
    const char32_t cp = tok::next_code_point(s, i);
    if (cp == '\\' || cp == static_cast<char32_t>(quote)) {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (!py_isprintable(cp)) {
      if (cp < 0x100)
        out += fmt::format("\\x{:02x}", static_cast<uint32_t>(cp));
      else if (cp < 0x10000)
        out += fmt::format("\\u{:04x}", static_cast<uint32_t>(cp));
      else
        out += fmt::format("\\U{:08x}", static_cast<uint32_t>(cp));
    } else {
      tok::append_utf8(out, cp);
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace

std::string py_repr(const Value& v) {
  if (v.is_string()) return repr_string(v.as_string());
  if (v.is_array()) {
    const Array& a = v.as_array();
    std::string out(1, a.tuple ? '(' : '[');
    for (size_t k = 0; k < a.items.size(); ++k) {
      if (k) out += ", ";
      out += py_repr(a.items[k]);
    }
    if (a.tuple && a.items.size() == 1) out.push_back(',');
    out.push_back(a.tuple ? ')' : ']');
    return out;
  }
  if (v.is_object()) {
    const Object& o = v.as_object();
    // A namespace can hold itself (ns.me = ns): Python prints the inner one as {...}.
    thread_local std::vector<const Object*> open;
    if (std::find(open.begin(), open.end(), &o) != open.end()) return o.is_namespace ? "<Namespace {...}>" : "{...}";
    if (open.size() >= static_cast<size_t>(kMaxNesting)) throw RenderError("values nested too deep to print");
    open.push_back(&o);
    struct Pop {
      ~Pop() { open.pop_back(); }
    } pop;
    std::string out = o.is_namespace ? "<Namespace {" : "{";
    for (size_t k = 0; k < o.items.size(); ++k) {
      if (k) out += ", ";
      out += repr_string(o.items[k].first) + ": " + py_repr(o.items[k].second);
    }
    return out + (o.is_namespace ? "}>" : "}");
  }
  if (v.is_undefined()) return "Undefined";
  return py_str(v);
}

std::string py_str(const Value& v) {
  return std::visit(
      [&](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Undefined>)
          return "";
        else if constexpr (std::is_same_v<T, None>)
          return "None";
        else if constexpr (std::is_same_v<T, bool>)
          return x ? "True" : "False";
        else if constexpr (std::is_same_v<T, int64_t>)
          return std::to_string(x);
        else if constexpr (std::is_same_v<T, double>)
          return py_float_repr(x);
        else if constexpr (std::is_same_v<T, std::shared_ptr<const std::string>>)
          return *x;
        else if constexpr (std::is_same_v<T, std::shared_ptr<const Callable>>)
          return "<function " + x->name + ">";
        else
          return py_repr(v);
      },
      v.storage());
}

bool py_equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.integer() == b.integer();
    return a.number() == b.number();
  }
  if (a.storage().index() != b.storage().index()) return false;
  if (a.is_undefined() || a.is_none()) return true;
  if (a.is_string()) return a.as_string() == b.as_string();
  if (a.is_array()) {
    const Array &x = a.as_array(), &y = b.as_array();
    if (x.tuple != y.tuple || x.items.size() != y.items.size()) return false;
    for (size_t k = 0; k < x.items.size(); ++k)
      if (!py_equal(x.items[k], y.items[k])) return false;
    return true;
  }
  if (a.is_object()) {
    const Object &x = a.as_object(), &y = b.as_object();
    if (x.is_namespace || y.is_namespace) return &x == &y;
    if (x.items.size() != y.items.size()) return false;
    for (const auto& [k, v] : x.items) {
      const Value* w = y.find(k);
      if (!w || !py_equal(v, *w)) return false;
    }
    return true;
  }
  return &a.as_callable() == &b.as_callable();
}

int py_compare(const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined())
    throw RenderError(fmt::format("'{}' is undefined", a.is_undefined() ? a.undefined_hint() : b.undefined_hint()));
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.integer() < b.integer() ? -1 : a.integer() > b.integer() ? 1 : 0;
    const double x = a.number(), y = b.number();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.is_string() && b.is_string()) {
    const int c = a.as_string().compare(b.as_string());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.is_array() && b.is_array() && a.as_array().tuple == b.as_array().tuple) {
    const auto &x = a.as_array().items, &y = b.as_array().items;
    for (size_t k = 0; k < x.size() && k < y.size(); ++k)
      if (!py_equal(x[k], y[k])) return py_compare(x[k], y[k]);
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  throw RenderError(fmt::format("'<' not supported between instances of '{}' and '{}'", a.type_name(), b.type_name()));
}

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const char32_t cp = tok::next_code_point(s, i);
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20 || (ensure_ascii && cp >= 0x7f)) {
      if (cp >= 0x10000) {
        const uint32_t v = static_cast<uint32_t>(cp) - 0x10000;
        out += fmt::format("\\u{:04x}\\u{:04x}", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
      } else {
        out += fmt::format("\\u{:04x}", static_cast<uint32_t>(cp));
      }
      continue;
    }
    out.append(s, start, i - start);
  }
  out.push_back('"');
}

void json_dump(std::string& out, const Value& v, const JsonStyle& st, int depth) {
  auto newline = [&](int d) {
    if (!st.indent) return;
    out.push_back('\n');
    for (int k = 0; k < d; ++k) out += st.indent_unit;
    if (out.size() > (size_t{1} << 28)) throw RenderError("tojson: the result would be too large");
  };
  if (v.is_none()) {
    out += "null";
  } else if (v.is_bool()) {
    out += v.as_bool() ? "true" : "false";
  } else if (v.is_int()) {
    out += std::to_string(v.as_int());
  } else if (v.is_float()) {
    const double d = v.as_float();
    out += std::isnan(d) ? "NaN" : std::isinf(d) ? (d > 0 ? "Infinity" : "-Infinity") : py_float_repr(d);
  } else if (v.is_string()) {
    json_string(out, v.as_string(), st.ensure_ascii);
  } else if (v.is_array()) {
    const auto& items = v.as_array().items;
    if (items.empty()) {
      out += "[]";
      return;
    }
    out.push_back('[');
    for (size_t k = 0; k < items.size(); ++k) {
      if (k) out += st.item_separator;
      newline(depth + 1);
      json_dump(out, items[k], st, depth + 1);
    }
    newline(depth);
    out.push_back(']');
  } else if (v.is_object() && !v.as_object().is_namespace) {
    std::vector<const std::pair<std::string, Value>*> items;
    for (const auto& kv : v.as_object().items) items.push_back(&kv);
    if (items.empty()) {
      out += "{}";
      return;
    }
    if (st.sort_keys)
      std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
    out.push_back('{');
    for (size_t k = 0; k < items.size(); ++k) {
      if (k) out += st.item_separator;
      newline(depth + 1);
      json_string(out, items[k]->first, st.ensure_ascii);
      out += st.key_separator;
      json_dump(out, items[k]->second, st, depth + 1);
    }
    newline(depth);
    out.push_back('}');
  } else {
    throw RenderError(fmt::format("Object of type {} is not JSON serializable", v.type_name()));
  }
}

}  // namespace

std::string py_json_dumps(const Value& v, const JsonStyle& style) {
  std::string out;
  json_dump(out, v, style, 0);
  return out;
}

namespace {

Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxNesting)
    throw Error(ExitCode::BadInput, fmt::format("JSON nested deeper than {} levels", kMaxNesting));
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return Value(None{});
    case nlohmann::ordered_json::value_t::boolean:
      return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return Value(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& x : j) items.push_back(from_json_at(x, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::pair<std::string, Value>> items;
      items.reserve(j.size());
      for (const auto& [k, x] : j.items()) items.emplace_back(k, from_json_at(x, depth + 1));
      return make_object(std::move(items));
    }
    default:
      return Value(None{});  // binary and discarded values do not come from a JSON file
  }
}

}  // namespace

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 1); }

}  // namespace slmops::jinja
