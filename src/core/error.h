// Errors: every failure the user can cause (bad files, bad flags, bad requests) is a dsv3::Error
// with a one-line message naming the file/tensor/field and the problem. Front ends print it and
// exit non-zero (CLI) or turn it into an error response (server); nothing aborts.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Checks a condition that bad input can break (not an internal invariant).
#define DSV3_CHECK(cond, ...)                 \
  do {                                        \
    if (!(cond)) ::dsv3::fail(__VA_ARGS__);   \
  } while (0)

}  // namespace dsv3
