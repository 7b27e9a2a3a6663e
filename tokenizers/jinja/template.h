// A Jinja template engine for Hugging Face chat templates, in C++: templates render byte for
// byte as transformers renders them with Jinja2 (ImmutableSandboxedEnvironment,
// trim_blocks, lstrip_blocks, loopcontrols, its tojson, raise_exception and strftime_now).
//
// Covered: {{ }}, {% %} and {# #} with whitespace control (- and +) and raw blocks; if/elif/
// else, for (else, `if` clause, unpacking, loop.*), break/continue, set (names, tuples,
// namespace attributes, blocks), macro, filter blocks, with, transformers' generation tag;
// Python's operators, literals, slicing, attribute/item lookup and string/dict methods;
// Jinja2's filters and tests that chat templates use (the parser names any other). Output
// is Python's str() of each value. Not covered: extends/include/import, call blocks,
// recursive loops, autoescape, *args/**kwargs in calls.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ir/error.h"
#include "tokenizers/jinja/value.h"

namespace slmops::jinja {

// Thrown when a template calls raise_exception(message): what() is the template's message.
class Raised : public Error {
 public:
  explicit Raised(std::string message) : Error(ExitCode::BadInput, std::move(message)) {}
};

class Template {
 public:
  // Parses `source` (UTF-8). Throws Error(BadInput) "line N: ..." on a syntax error.
  explicit Template(std::string_view source);
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  ~Template();

  // Renders with these top-level variables (plus the globals range, namespace, dict,
  // raise_exception and strftime_now). Throws Raised for raise_exception() and
  // Error(BadInput) "line N: ..." for any other error (Python's TypeError, an undefined
  // value used, ...).
  std::string render(const std::vector<std::pair<std::string, Value>>& variables) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slmops::jinja
