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
  Error(ExitCode code, std::string message) : std::runtime_error(std::move(message)), code_(code) {}
  ExitCode code() const { return code_; }

 private:
  ExitCode code_;
};

// Bad input: names the file/node/option and what is wrong. Exit code 2.
template <typename... Args>
[[noreturn]] void bad_input(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ExitCode::BadInput, fmt::format(f, std::forward<Args>(args)...));
}

// Runtime failure (I/O, resources). Exit code 1.
template <typename... Args>
[[noreturn]] void failure(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(ExitCode::Failure, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace slmops
