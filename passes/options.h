// Pass options, declared once. A pass's options struct lists each member with its name and
// help text; that one table gives the defaults, the JSON validation of recipes, the CLI
// flags and the `slmops passes --json` listing (MLIR's Passes.td, without TableGen).
#pragma once
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace slmops::passes {

enum class OptionType { Bool, Int, Float, String, StringList };
std::string_view option_type_name(OptionType t);

struct OptionSpec {
  std::string name;  // kebab-case: the recipe key and the CLI flag (--name)
  OptionType type;
  nlohmann::json default_value;
  std::string help;
  std::vector<std::string> choices;  // for String: allowed values (empty = any)
  bool path = false;  // a file path: recipes resolve it against the recipe's folder
};

// Checks `given` (a JSON object) against `specs`. Returns one message per problem, each
// naming the option: unknown keys (with the valid ones listed), wrong types, bad choices.
std::vector<std::string> validate_options(std::string_view pass, const std::vector<OptionSpec>& specs,
                                          const nlohmann::json& given);
// `given` with every missing option set to its default. Call after validate_options.
nlohmann::json with_defaults(const std::vector<OptionSpec>& specs, const nlohmann::json& given);
nlohmann::json specs_to_json(const std::vector<OptionSpec>& specs);
// Parses a CLI/--set string into the JSON type the option wants; throws Error naming it.
nlohmann::json parse_option_text(const OptionSpec& spec, std::string_view text);

// Binds an options struct T to its specs through member pointers.
template <typename T>
class OptionTable {
 public:
  using Member = std::variant<bool T::*, int64_t T::*, double T::*, std::string T::*, std::vector<std::string> T::*>;
  struct Entry {
    std::string name;
    Member member;
    std::string help;
    std::vector<std::string> choices;
    bool path = false;
  };

  explicit OptionTable(std::vector<Entry> entries) : entries_(std::move(entries)) {
    const T defaults{};
    for (auto& e : entries_) {
      OptionSpec s{e.name, OptionType::Bool, nullptr, e.help, e.choices, e.path};
      std::visit(
          [&](auto m) {
            using V = std::decay_t<decltype(defaults.*m)>;
            s.type = type_of<V>();
            s.default_value = defaults.*m;
          },
          e.member);
      specs_.push_back(std::move(s));
    }
  }
  const std::vector<OptionSpec>& specs() const { return specs_; }

  // `j` has passed validate_options; missing keys keep the struct's defaults.
  T from_json(const nlohmann::json& j) const {
    T out{};
    for (auto& e : entries_) {
      if (!j.contains(e.name)) continue;
      std::visit([&](auto m) { out.*m = j.at(e.name).template get<std::decay_t<decltype(out.*m)>>(); }, e.member);
    }
    return out;
  }

 private:
  template <typename V>
  static constexpr OptionType type_of() {
    if constexpr (std::is_same_v<V, bool>) return OptionType::Bool;
    else if constexpr (std::is_same_v<V, int64_t>) return OptionType::Int;
    else if constexpr (std::is_same_v<V, double>) return OptionType::Float;
    else if constexpr (std::is_same_v<V, std::string>) return OptionType::String;
    else return OptionType::StringList;
  }
  std::vector<Entry> entries_;
  std::vector<OptionSpec> specs_;
};

}  // namespace slmops::passes
