// The one exception type of ambient, and helpers that build "what: expected X, got Y" messages.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace ambient {

/// Every error ambient raises on purpose. Messages read "what: expected X, got Y (where)".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... Rest>
void append(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append(os, rest...);
}
}  // namespace detail

/// Builds a message from its pieces and throws ambient::Error.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream os;
  detail::append(os, args...);
  throw Error(os.str());
}

/// Formats a shape as "[a, b, c]".
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace ambient

/// Throws ambient::Error with the message pieces when cond is false. Used for input checks, never assert.
#define AMBIENT_CHECK(cond, ...)          \
  do {                                    \
    if (!(cond)) ::ambient::fail(__VA_ARGS__); \
  } while (0)
