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
    CHECK(std::string(e.what()).find("--count '12x'") != std::string::npos);
  }
}

namespace {
struct Ranged {
  std::string mode = "a";
  int64_t size = 32;
  double damp = 0.1;
  bool extra = false;
};
const OptionTable<Ranged>& ranged_table() {
  static const OptionTable<Ranged> t({{"mode", &Ranged::mode, "mode", {"a", "b"}},
                                      {"size", &Ranged::size, "size", {}, false, {16, 256}, "mode=a"},
                                      {"damp", &Ranged::damp, "damp", {}, false, {0, 1, true, true}},
                                      {"extra", &Ranged::extra, "extra", {}, false, {}, "mode=b and size"}});
  return t;
}
}  // namespace

TEST_CASE("declared ranges are checked on CLI text and in JSON, exactly for big integers") {
  auto& specs = ranged_table().specs();
  CHECK_THROWS_WITH_AS(parse_option_text(specs[1], "8"), "--size '8': must be from 16 to 256", Error);
  CHECK_THROWS_WITH_AS(parse_option_text(specs[2], "1"), "--damp '1': must be in (0, 1)", Error);
  CHECK_THROWS_WITH_AS(parse_option_text(specs[1], "9223372036854775807"),
                       "--size '9223372036854775807': must be from 16 to 256", Error);
  CHECK(parse_option_text(specs[1], "256") == 256);
  auto p = validate_options("demo", specs, {{"size", 18446744073709551615ull}});
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("must be from 16 to 256") != std::string::npos);
  CHECK(describe_values(specs[1]) == "int from 16 to 256, default 32; only with mode=a");
}

TEST_CASE("an option that does not apply to the chosen mode is an error") {
  auto& specs = ranged_table().specs();
  CHECK(validate_options("demo", specs, {{"size", 64}}).empty());
  auto p = validate_options("demo", specs, {{"mode", "b"}, {"size", 64}}, Naming::Cli);
  REQUIRE(p.size() == 1);
  CHECK(p[0] == "--size 64: does not apply here (mode is \"b\"; it applies only with mode=a)");
  // "mode=b and size": size is set (non-zero by default), so extra applies with mode b only.
  CHECK(validate_options("demo", specs, {{"mode", "b"}, {"extra", true}}).empty());
  CHECK(validate_options("demo", specs, {{"extra", true}}).size() == 1);
}

TEST_CASE("the nearest name: typos and abbreviations, nothing for unrelated words") {
  CHECK(nearest_name("--mod", {"--mode", "--output"}) == "--mode");
  CHECK(nearest_name("quantise", {"quantize", "evaluate"}) == "quantize");
  CHECK(nearest_name("acc", {"accuracy", "perplexity"}) == "accuracy");
  CHECK(nearest_name("zzzzzz", {"accuracy", "perplexity"}).empty());
}
