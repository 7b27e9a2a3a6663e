#include "passes/options.h"

#include <fmt/format.h>

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

std::vector<std::string> validate_options(std::string_view pass, const std::vector<OptionSpec>& specs,
                                          const nlohmann::json& given) {
  std::vector<std::string> problems;
  if (given.is_null()) return problems;
  if (!given.is_object()) {
    problems.push_back(fmt::format("pass '{}': options must be a JSON object", pass));
    return problems;
  }
  for (auto& [key, value] : given.items()) {
    const OptionSpec* spec = nullptr;
    for (auto& s : specs)
      if (s.name == key) spec = &s;
    if (!spec) {
      problems.push_back(fmt::format("pass '{}': unknown option '{}' ({})", pass, key, valid_names(specs)));
      continue;
    }
    if (!type_matches(spec->type, value)) {
      problems.push_back(fmt::format("pass '{}': option '{}' must be a {}, got {}", pass, key,
                                     option_type_name(spec->type), value.dump()));
      continue;
    }
    if (!spec->choices.empty() && value.is_string()) {
      bool ok = false;
      for (auto& c : spec->choices) ok = ok || c == value.get<std::string>();
      if (!ok)
        problems.push_back(fmt::format("pass '{}': option '{}' is {}, expected one of: {}", pass, key, value.dump(),
                                       fmt::join(spec->choices, ", ")));
    }
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
    arr.push_back(std::move(o));
  }
  return arr;
}

nlohmann::json parse_option_text(const OptionSpec& spec, std::string_view text) {
  std::string t(text);
  switch (spec.type) {
    case OptionType::Bool:
      if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
      if (t == "false" || t == "0" || t == "no" || t == "off") return false;
      bad_input("option '{}' must be true or false, got '{}'", spec.name, t);
    case OptionType::Int:
      try {
        size_t used = 0;
        long long v = std::stoll(t, &used);
        if (used == t.size()) return v;
      } catch (const std::exception&) {
      }
      bad_input("option '{}' must be a whole number, got '{}'", spec.name, t);
    case OptionType::Float:
      try {
        size_t used = 0;
        double v = std::stod(t, &used);
        if (used == t.size()) return v;
      } catch (const std::exception&) {
      }
      bad_input("option '{}' must be a number, got '{}'", spec.name, t);
    case OptionType::String: return t;
    case OptionType::StringList: {
      nlohmann::json arr = nlohmann::json::array();
      size_t start = 0;
      while (start <= t.size() && !t.empty()) {
        size_t comma = t.find(',', start);
        if (comma == std::string::npos) comma = t.size();
        arr.push_back(t.substr(start, comma - start));
        start = comma + 1;
      }
      return arr;
    }
  }
  return nullptr;
}

}  // namespace slmops::passes
