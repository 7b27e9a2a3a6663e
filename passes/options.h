// Pass options, declared once. A pass's options struct lists each member with its name and
// help text; that one table gives the defaults, the JSON validation of recipes, the CLI
// flags and the `slmops passes --json` listing (MLIR's Passes.td, without TableGen).
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace slmops::passes {

enum class OptionType { Bool, Int, Float, String, StringList };
std::string_view option_type_name(OptionType t);

// The values an Int or Float option accepts, inclusive unless marked exclusive. Every
// numeric option declares one: a value outside it is refused before any work, with one line.
struct Range {
  double min = -HUGE_VAL, max = HUGE_VAL;
  bool min_exclusive = false, max_exclusive = false;
  bool bounded() const { return std::isfinite(min) || std::isfinite(max); }
};

struct OptionSpec {
  std::string name;  // kebab-case: the recipe key and the CLI flag (--name)
  OptionType type;
  nlohmann::json default_value;
  std::string help;
  std::vector<std::string> choices;  // for String/StringList: allowed values (empty = any)
  bool path = false;  // a file path: recipes resolve it against the recipe's folder; must exist
  Range range;        // for Int/Float
  // When the option means something, as alternatives separated by " or ", each a list of
  // conditions joined by " and ": `mode=int4-weight|int8-weight and algorithm=gptq`
  // (another option's value is one of these), or a bare `max-degradation` (that option is
  // set). Empty: always. Giving an option that does not apply is an error, not a no-op.
  std::string applies = {};
};

// How a message names an option: `--block-size` on the command line, `option 'block-size'`
// in a recipe.
enum class Naming { Cli, Recipe };
std::string option_label(std::string_view name, Naming naming);
// A JSON value as text for a message: invalid UTF-8 in strings (a recipe or --set value) is
// replaced, where nlohmann's dump() would throw.
std::string json_text(const nlohmann::json& v);
// Whether `v` has the JSON type an option of type `t` takes (an int option takes only JSON
// integers: 1e44 or 2.5 is refused, never converted).
bool value_has_type(OptionType t, const nlohmann::json& v);

// "" when `value` (of the right type) is inside the spec's range and choices, else what is
// wrong ("must be from 16 to 256", "must be one of: rtn, gptq, hqq").
std::string value_problem(const OptionSpec& spec, const nlohmann::json& value);
// The range as text: "from 1 to 65536", "at least 1", "in (0, 1)"; "" when unbounded.
std::string range_text(const Range& r, bool integer);
// One-line description for --help and `slmops passes`: type, choices or range, default,
// and when it applies.
std::string describe_values(const OptionSpec& spec);
// Whether `spec` applies given the options in effect (`full`: every option with defaults).
// On false, `why` says which condition failed ("mode is int8-dynamic").
bool option_applies(const OptionSpec& spec, const nlohmann::json& full, std::string* why = nullptr);

// Checks `given` (a JSON object) against `specs`. Returns one message per problem, each
// naming the option: unknown keys (with the valid ones listed), wrong types, bad choices.
// Also checks ranges, and that every option given applies (see OptionSpec::applies).
std::vector<std::string> validate_options(std::string_view pass, const std::vector<OptionSpec>& specs,
                                          const nlohmann::json& given, Naming naming = Naming::Recipe);
// The option nearest to `name` by edit distance (for "did you mean --mode?"), or "".
std::string nearest_name(std::string_view name, const std::vector<std::string>& candidates);
// `given` with every missing option set to its default. Call after validate_options.
nlohmann::json with_defaults(const std::vector<OptionSpec>& specs, const nlohmann::json& given);
nlohmann::json specs_to_json(const std::vector<OptionSpec>& specs);
// Parses a CLI string into the JSON type the option wants, checks its range and choices;
// throws Error(BadInput) naming --<option>.
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
    Range range{};
    std::string applies;
  };

  explicit OptionTable(std::vector<Entry> entries) : entries_(std::move(entries)) {
    const T defaults{};
    for (auto& e : entries_) {
      OptionSpec s{e.name, OptionType::Bool, nullptr, e.help, e.choices, e.path, e.range, e.applies};
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
