// Fuzz target: the Jinja engine for chat templates (tokenizers/jinja/template.h).
// Input: a template, optionally followed by a line "--context" and a JSON value. The target
// parses the template and renders it with a fixed context shaped like what transformers passes
// (messages with string, null and list contents and tool calls, tools, documents, the special
// tokens, add_generation_prompt, numbers, nested lists, a dict and a namespace). When the JSON
// part parses, an object's keys are added to that context (replacing variables of the same
// name) and any other value is bound to `data`. The template is rendered twice with fresh
// copies of the context, and once with no variables at all.
// Findings beyond fuzz_util.h's (every error must be slmops::Error; jinja::Raised is one):
//   - two renders of one template with equal contexts give different bytes (templates that
//     call strftime_now are exempt: they read the clock);
//   - the output is not valid UTF-8 (the template and every context string are);
//   - the output is larger than the engine's 256 MiB limit on a string or output.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "tokenizers/jinja/template.h"
#include "tokenizers/jinja/value.h"
#include "tokenizers/unicode.h"

using namespace slmops;

namespace {

using Vars = std::vector<std::pair<std::string, jinja::Value>>;

// render.cpp's kMaxString: "a string or output larger than this is refused".
constexpr size_t kMaxOutput = size_t{1} << 28;

const char* const kContext = R"json({
  "messages": [
    {"role": "system", "content": "You are a helpful assistant. {{ not a tag }} <|im_start|>"},
    {"role": "user", "content": "Hi! h\u00e9llo \u65e5\u672c \ud83d\ude00 \u0130 \u00df"},
    {"role": "assistant", "content": null, "reasoning_content": "The user greets.",
     "tool_calls": [{"type": "function", "id": "call_1",
                     "function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}},
                    {"type": "function", "function": {"name": "noop", "arguments": "{\"x\": 1}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temp\": 21.5}"},
    {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image", "url": null},
                                 {"type": "text", "text": " this\n"}]},
    {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nSure.  ", "thinking": null}
  ],
  "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                            "days": {"type": "integer", "default": 1}}, "required": ["city"]}}}],
  "documents": null,
  "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": null,
  "add_generation_prompt": true, "enable_thinking": false,
  "n": 3, "f": 2.5, "neg": -7, "big": 9223372036854775807, "empty": "", "empty_list": [], "empty_dict": {},
  "nested": [[1, [2, [3, null]]], {"a": {"b": [true, false, 0.1]}}, "x"],
  "ns": {"index": 0, "flag": false, "name": "n\u00e4me", "items": ["a", "b", "a"], "sub": {"k": [1, 2]}}
})json";

Vars base_context(const nlohmann::ordered_json& extra) {
  static const nlohmann::ordered_json fixed = nlohmann::ordered_json::parse(kContext);
  Vars vars;
  for (const auto& [k, v] : fixed.items()) vars.emplace_back(k, jinja::from_json(v));
  // One mutable namespace, as `{% set state = namespace(...) %}` would make it.
  vars.emplace_back("state", jinja::make_object({{"count", jinja::Value(0)}, {"seen", jinja::Value::list({})}}, true));
  auto put = [&](const std::string& k, jinja::Value v) {
    for (auto& kv : vars)
      if (kv.first == k) {
        kv.second = std::move(v);
        return;
      }
    vars.emplace_back(k, std::move(v));
  };
  if (extra.is_object()) {
    for (const auto& [k, v] : extra.items()) put(k, jinja::from_json(v));
  } else if (!extra.is_discarded()) {
    put("data", jinja::from_json(extra));
  }
  return vars;
}

void check_output(const std::string& out, bool check_utf8) {
  if (out.size() > kMaxOutput) fuzz::finding("jinja output above the 256 MiB limit", std::to_string(out.size()));
  if (check_utf8 && tok::valid_utf8(out) != out) fuzz::finding("jinja output is not valid UTF-8", out.substr(0, 200));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::init_process();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view source(reinterpret_cast<const char*>(data), size);
  nlohmann::ordered_json extra(nlohmann::ordered_json::value_t::discarded);
  const std::string_view marker = "\n--context\n";
  if (auto at = source.find(marker); at != std::string_view::npos) {
    // Parse errors (and invalid UTF-8: nlohmann refuses it) leave `extra` discarded.
    extra = nlohmann::ordered_json::parse(source.substr(at + marker.size()), nullptr, false);
    source = source.substr(0, at);
  }
  fuzz::guarded([&] {
    const jinja::Template t(source);
    // Determinism: strftime_now reads the clock (only a template naming it can call it).
    const bool clock = source.find("strftime_now") != std::string_view::npos;
    // One render: its output, or the message of the slmops::Error it ended with.
    auto render = [&](const Vars& vars, bool& ok) {
      std::string result;
      ok = false;
      try {
        result = t.render(vars);
        ok = true;
        check_output(result, true);
      } catch (const Error& e) {
        result = e.what();
      }
      return result;
    };
    bool ok1 = false, ok2 = false, ok3 = false;
    const std::string first = render(base_context(extra), ok1);
    const std::string second = render(base_context(extra), ok2);
    if (!clock && (ok1 != ok2 || first != second))
      fuzz::finding("jinja render is not deterministic", std::string(ok1 ? "output" : "error") + " of " +
                                                             std::to_string(first.size()) + " bytes, then " +
                                                             (ok2 ? "output" : "error") + " of " +
                                                             std::to_string(second.size()) + ": " +
                                                             first.substr(0, 100) + " | " + second.substr(0, 100));
    // Everything undefined: the paths that handle missing variables.
    render({}, ok3);
  });
  return 0;
}
