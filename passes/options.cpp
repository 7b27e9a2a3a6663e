#include "passes/options.h"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ir/error.h"

namespace slmops::passes {

std::string_view option_type_name(OptionType t) {
  switch (t) {
    case OptionType::Bool: return "bool";
    case OptionType::Int: return "int";
    case OptionType::Float: return "float";
    case OptionType::String: return "string";
    case OptionType::StringList: return "string list";
  }
  return "?";
}

static bool type_matches(OptionType t, const nlohmann::json& v) {
  switch (t) {
    case OptionType::Bool: return v.is_boolean();
    case OptionType::Int: return v.is_number_integer();
    case OptionType::Float: return v.is_number();
    case OptionType::String: return v.is_string();
    case OptionType::StringList:
      if (!v.is_array()) return false;
      for (auto& e : v)
        if (!e.is_string()) return false;
      return true;
  }
  return false;
}

static std::string valid_names(const std::vector<OptionSpec>& specs) {
  if (specs.empty()) return "it takes no options";
  std::string s = "valid options: ";
  for (size_t i = 0; i < specs.size(); ++i) s += (i ? ", " : "") + specs[i].name;
  return s;
}

bool value_has_type(OptionType t, const nlohmann::json& v) { return type_matches(t, v); }

std::string json_text(const nlohmann::json& v) {
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string option_label(std::string_view name, Naming naming) {
  return naming == Naming::Cli ? fmt::format("--{}", name) : fmt::format("option '{}'", name);
}

static std::string number_text(double v, bool integer) {
  if (integer && std::isfinite(v)) return fmt::format("{}", static_cast<long long>(v));
  return fmt::format("{:g}", v);
}

std::string range_text(const Range& r, bool integer) {
  bool lo = std::isfinite(r.min), hi = std::isfinite(r.max);
  if (!lo && !hi) return "";
  if (lo && hi && !r.min_exclusive && !r.max_exclusive)
    return fmt::format("from {} to {}", number_text(r.min, integer), number_text(r.max, integer));
  if (lo && hi)
    return fmt::format("in {}{}, {}{}", r.min_exclusive ? "(" : "[", number_text(r.min, integer),
                       number_text(r.max, integer), r.max_exclusive ? ")" : "]");
  if (lo) return fmt::format("{} {}", r.min_exclusive ? "above" : "at least", number_text(r.min, integer));
  return fmt::format("{} {}", r.max_exclusive ? "below" : "at most", number_text(r.max, integer));
}

static bool in_range(const Range& r, double v) {
  if (std::isnan(v)) return false;
  if (r.min_exclusive ? !(v > r.min) : !(v >= r.min)) return false;
  if (r.max_exclusive ? !(v < r.max) : !(v <= r.max)) return false;
  return true;
}

std::string value_problem(const OptionSpec& spec, const nlohmann::json& value) {
  const bool integer = spec.type == OptionType::Int;
  if ((spec.type == OptionType::Int || spec.type == OptionType::Float) && value.is_number()) {
    // Integers compare exactly: a double cannot tell 2^63-1 from 2^63.
    bool ok = true;
    if (integer && value.is_number_unsigned()) {
      const uint64_t v = value.get<uint64_t>();
      const Range& r = spec.range;
      ok = (!std::isfinite(r.max) || (r.max >= 0 && v <= static_cast<uint64_t>(r.max))) &&
           (!std::isfinite(r.min) || r.min <= 0 || v >= static_cast<uint64_t>(r.min));
    } else if (integer) {
      long long v = value.get<long long>();
      ok = in_range(spec.range, static_cast<double>(v)) &&
           !(std::isfinite(spec.range.max) && v > static_cast<long long>(spec.range.max)) &&
           !(std::isfinite(spec.range.min) && v < static_cast<long long>(spec.range.min));
    } else {
      ok = in_range(spec.range, value.get<double>());
    }
    if (!ok) return fmt::format("must be {}", range_text(spec.range, integer));
  }
  if (!spec.choices.empty()) {
    auto allowed = [&](const nlohmann::json& v) {
      for (auto& c : spec.choices)
        if (v.is_string() && c == v.get<std::string>()) return true;
      return false;
    };
    bool ok = true;
    if (value.is_string()) ok = allowed(value);
    else if (value.is_array())
      for (auto& e : value) ok = ok && allowed(e);
    if (!ok) return fmt::format("expected one of: {}", fmt::join(spec.choices, ", "));
  }
  return "";
}

std::string describe_values(const OptionSpec& spec) {
  std::string s(option_type_name(spec.type));
  if (!spec.choices.empty()) s = fmt::format("one of {}", fmt::join(spec.choices, "|"));
  auto r = range_text(spec.range, spec.type == OptionType::Int);
  if (!r.empty()) s += " " + r;
  s += ", default " + json_text(spec.default_value);
  if (!spec.applies.empty()) s += "; only with " + spec.applies;
  return s;
}

static std::vector<std::string> split(std::string_view text, std::string_view sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = text.find(sep, start);
    out.emplace_back(text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) break;
    start = at + sep.size();
  }
  return out;
}

static bool is_set(const nlohmann::json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string() || v.is_array()) return !v.empty();
  if (v.is_number()) return v.get<double>() != 0;
  return !v.is_null();
}

bool option_applies(const OptionSpec& spec, const nlohmann::json& full, std::string* why) {
  if (spec.applies.empty()) return true;
  std::string first_failure;
  for (auto& alternative : split(spec.applies, " or ")) {
    bool all = true;
    for (auto& cond : split(alternative, " and ")) {
      auto eq = cond.find('=');
      std::string key = cond.substr(0, eq);
      nlohmann::json v = full.contains(key) ? full.at(key) : nlohmann::json();
      bool ok;
      if (eq == std::string::npos) {
        ok = is_set(v);
        if (!ok && first_failure.empty()) first_failure = fmt::format("{} is not set", key);
      } else {
        std::string text = v.is_string() ? v.get<std::string>() : json_text(v);
        ok = false;
        for (auto& allowed : split(cond.substr(eq + 1), "|")) ok = ok || allowed == text;
        if (!ok && first_failure.empty()) first_failure = fmt::format("{} is {}", key, json_text(v));
      }
      all = all && ok;
    }
    if (all) return true;
  }
  if (why) *why = first_failure;
  return false;
}

std::string nearest_name(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (auto& c : candidates) {
    // Levenshtein distance, one row at a time.
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= name.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (name[i - 1] == c[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    if (row[c.size()] < best_d) {
      best_d = row[c.size()];
      best = c;
    }
  }
  size_t limit = std::max<size_t>(2, name.size() / 3);
  if (best_d <= limit) return best;
  // An abbreviation ("acc" for accuracy): the one candidate that starts with it.
  std::string prefixed;
  for (auto& c : candidates)
    if (name.size() >= 3 && c.rfind(name, 0) == 0) {
      if (!prefixed.empty()) return "";
      prefixed = c;
    }
  return prefixed;
}

std::vector<std::string> validate_options(std::string_view pass, const std::vector<OptionSpec>& specs,
                                          const nlohmann::json& given, Naming naming) {
  std::vector<std::string> problems;
  if (given.is_null()) return problems;
  if (!given.is_object()) {
    problems.push_back(fmt::format("pass '{}': options must be a JSON object", pass));
    return problems;
  }
  const bool cli = naming == Naming::Cli;
  auto subject = [&](const std::string& key, const nlohmann::json& v) {
    std::string text = v.is_string() ? v.get<std::string>() : json_text(v);
    return cli ? fmt::format("--{} {}", key, text) : fmt::format("pass '{}': option '{}' is {}", pass, key, json_text(v));
  };
  std::vector<std::string> names;
  for (auto& s : specs) names.push_back(s.name);
  bool types_ok = true;
  for (auto& [key, value] : given.items()) {
    const OptionSpec* spec = nullptr;
    for (auto& s : specs)
      if (s.name == key) spec = &s;
    if (!spec) {
      auto near = nearest_name(key, names);
      std::string hint = near.empty() ? "" : fmt::format("did you mean '{}'? ", near);
      problems.push_back(fmt::format("pass '{}': unknown option '{}' ({}{})", pass, key, hint, valid_names(specs)));
      types_ok = false;
      continue;
    }
    if (!type_matches(spec->type, value)) {
      problems.push_back(cli ? fmt::format("{}: must be a {}", subject(key, value), option_type_name(spec->type))
                             : fmt::format("pass '{}': option '{}' must be a {}, got {}", pass, key,
                                           option_type_name(spec->type), json_text(value)));
      types_ok = false;
      continue;
    }
    auto why = value_problem(*spec, value);
    if (!why.empty()) {
      problems.push_back(fmt::format("{}{} {}", subject(key, value), cli ? ":" : ",", why));
      types_ok = false;
    }
  }
  if (!types_ok) return problems;
  // Options given that the rest of the options make meaningless (the mode ignores them).
  nlohmann::json full = with_defaults(specs, given);
  for (auto& [key, value] : given.items()) {
    const OptionSpec* spec = nullptr;
    for (auto& s : specs)
      if (s.name == key) spec = &s;
    std::string why;
    if (spec && !option_applies(*spec, full, &why))
      problems.push_back(fmt::format("{}{} does not apply here ({}; it applies only with {})", subject(key, value),
                                     cli ? ":" : ",", why, spec->applies));
  }
  return problems;
}

nlohmann::json with_defaults(const std::vector<OptionSpec>& specs, const nlohmann::json& given) {
  nlohmann::json out = nlohmann::json::object();
  for (auto& s : specs) out[s.name] = (given.is_object() && given.contains(s.name)) ? given.at(s.name) : s.default_value;
  return out;
}

nlohmann::json specs_to_json(const std::vector<OptionSpec>& specs) {
  nlohmann::json arr = nlohmann::json::array();
  for (auto& s : specs) {
    nlohmann::json o = {{"name", s.name}, {"type", option_type_name(s.type)}, {"default", s.default_value},
                        {"help", s.help}};
    if (!s.choices.empty()) o["choices"] = s.choices;
    if (s.path) o["path"] = true;
    if (std::isfinite(s.range.min)) o["min"] = s.range.min;
    if (std::isfinite(s.range.max)) o["max"] = s.range.max;
    if (s.range.min_exclusive) o["min_exclusive"] = true;
    if (s.range.max_exclusive) o["max_exclusive"] = true;
    if (!s.applies.empty()) o["applies"] = s.applies;
    arr.push_back(std::move(o));
  }
  return arr;
}

nlohmann::json parse_option_text(const OptionSpec& spec, std::string_view text) {
  std::string t(text);
  const std::string flag = "--" + spec.name;
  nlohmann::json out;
  switch (spec.type) {
    case OptionType::Bool:
      if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
      if (t == "false" || t == "0" || t == "no" || t == "off") return false;
      bad_input("{} '{}': must be true or false", flag, t);
    case OptionType::Int: {
      bool ok = false;
      try {
        size_t used = 0;
        long long v = std::stoll(t, &used);
        ok = used == t.size() && !t.empty();
        out = v;
      } catch (const std::exception&) {
      }
      if (!ok) {
        auto r = range_text(spec.range, true);
        bad_input("{} '{}': must be a whole number{}", flag, t, r.empty() ? "" : " " + r);
      }
      break;
    }
    case OptionType::Float: {
      bool ok = false;
      try {
        size_t used = 0;
        double v = std::stod(t, &used);
        ok = used == t.size() && !t.empty() && std::isfinite(v);
        out = v;
      } catch (const std::exception&) {
      }
      if (!ok) {
        auto r = range_text(spec.range, false);
        bad_input("{} '{}': must be a number{}", flag, t, r.empty() ? "" : " " + r);
      }
      break;
    }
    case OptionType::String: out = t; break;
    case OptionType::StringList: {
      out = nlohmann::json::array();
      size_t start = 0;
      while (start <= t.size() && !t.empty()) {
        size_t comma = t.find(',', start);
        if (comma == std::string::npos) comma = t.size();
        out.push_back(t.substr(start, comma - start));
        start = comma + 1;
      }
      break;
    }
  }
  auto why = value_problem(spec, out);
  if (!why.empty()) {
    std::string hint;
    if (!spec.choices.empty() && out.is_string()) {
      auto near = nearest_name(t, spec.choices);
      if (!near.empty()) hint = fmt::format(" (did you mean {}?)", near);
    }
    bad_input("{} '{}': {}{}", flag, t, why, hint);
  }
  return out;
}

}  // namespace slmops::passes
