// Options declared once: validation of JSON, CLI text parsing, defaults.
#include <doctest/doctest.h>

#include "ir/error.h"
#include "passes/cleanup.h"
#include "passes/options.h"

using namespace slmops;
using namespace slmops::passes;
using json = nlohmann::json;

namespace {
struct Demo {
  bool flag = true;
  int64_t count = 3;
  double ratio = 0.5;
  std::string mode = "fast";
  std::vector<std::string> names;
};
const OptionTable<Demo>& demo_table() {
  static const OptionTable<Demo> t({{"flag", &Demo::flag, "a flag", {}},
                                    {"count", &Demo::count, "a count", {}},
                                    {"ratio", &Demo::ratio, "a ratio", {}},
                                    {"mode", &Demo::mode, "a mode", {"fast", "slow"}},
                                    {"names", &Demo::names, "some names", {}}});
  return t;
}
}  // namespace

TEST_CASE("the table gives types and defaults from the struct") {
  auto& specs = demo_table().specs();
  REQUIRE(specs.size() == 5);
  CHECK(specs[0].type == OptionType::Bool);
  CHECK(specs[1].default_value == 3);
  CHECK(specs[2].type == OptionType::Float);
  CHECK(specs[3].default_value == "fast");
  CHECK(specs[4].type == OptionType::StringList);
}

TEST_CASE("validation reports every problem and names the option") {
  json given = {{"flag", "yes"}, {"cuont", 4}, {"mode", "medium"}, {"ratio", 1}};
  auto problems = validate_options("demo", demo_table().specs(), given);
  REQUIRE(problems.size() == 3);
  std::string all;
  for (auto& p : problems) all += p + "\n";
  CHECK(all.find("unknown option 'cuont'") != std::string::npos);
  CHECK(all.find("valid options: flag, count, ratio, mode, names") != std::string::npos);
  CHECK(all.find("'flag' must be a bool") != std::string::npos);
  CHECK(all.find("'mode' is \"medium\", expected one of: fast, slow") != std::string::npos);
}

TEST_CASE("from_json fills the struct; missing keys keep defaults") {
  Demo d = demo_table().from_json({{"count", 7}, {"names", {"a", "b"}}});
  CHECK(d.count == 7);
  CHECK(d.flag);
  CHECK(d.names == std::vector<std::string>{"a", "b"});
  CHECK(with_defaults(demo_table().specs(), {{"count", 7}})["mode"] == "fast");
}

TEST_CASE("CLI text parses by type and rejects bad values naming the option") {
  auto& specs = demo_table().specs();
  CHECK(parse_option_text(specs[0], "false") == false);
  CHECK(parse_option_text(specs[1], "12") == 12);
  CHECK(parse_option_text(specs[2], "0.25") == 0.25);
  CHECK(parse_option_text(specs[4], "a,b") == json::array({"a", "b"}));
  try {
    parse_option_text(specs[1], "12x");
    FAIL("expected an error");
  } catch (const Error& e) {
    CHECK(e.code() == ExitCode::BadInput);
    CHECK(std::string(e.what()).find("'count'") != std::string::npos);
  }
}
