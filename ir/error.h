// One exception type for every error a user or the machine can cause. Library code throws;
// main() catches once and maps the code to the process exit status.
#pragma once
#include <stdexcept>
#include <string>
#include <fmt/format.h>

namespace slmops {

enum class ExitCode : int {
  Ok = 0,
  Failure = 1,     // runtime failure: I/O error, out of memory, a bug
  BadInput = 2,    // bad input or usage: the user can fix it
  GoalNotMet = 3,  // an evaluation goal was not met
};

class Error : public std::runtime_error {
 public:
  Error(ExitCode code, std::string message, std::string node = {})
      : std::runtime_error(std::move(message)), code_(code), node_(std::move(node)) {}
  ExitCode code() const { return code_; }
  // The graph node the error happened in, as the message names it ('name' or (Op node));
  // empty when no node is involved. Set once, by the innermost executor that ran the node,
  // so outer layers (subgraphs, evaluate) see that the message already names it.
  const std::string& node() const { return node_; }

 private:
  ExitCode code_;
  std::string node_;
};

// Bad input: names the file/node/option and what is wrong. Exit code 2.
template <typename... Args>
[[noreturn]] void bad_input(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ExitCode::BadInput, fmt::format(f, std::forward<Args>(args)...));
}

// Bad input found at a graph node: the message names it (as "node 'x' (Op): ..."), and
// Error::node() carries the same label so that no outer layer names it again.
template <typename... Args>
[[noreturn]] void bad_input_at(std::string node, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ExitCode::BadInput, fmt::format(f, std::forward<Args>(args)...), std::move(node));
}

// Runtime failure (I/O, resources). Exit code 1.
template <typename... Args>
[[noreturn]] void failure(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ExitCode::Failure, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace slmops
