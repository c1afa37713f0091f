// Error type and checks: every failure a user can act on is a moe::Error thrown with file:line.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const char* file, int line);
  const std::string& message() const { return message_; }  // without the file:line suffix
  const std::string& location() const { return location_; }

 private:
  std::string message_;
  std::string location_;
};

}  // namespace moe

// MOE_THROW("model.d_model must be > 0, got " << value);
#define MOE_THROW(msg)                                            \
  do {                                                            \
    std::ostringstream moe_error_stream_;                         \
    moe_error_stream_ << msg;                                     \
    throw ::moe::Error(moe_error_stream_.str(), __FILE__, __LINE__); \
  } while (0)

#define MOE_CHECK(cond, msg) \
  do {                       \
    if (!(cond)) MOE_THROW(msg); \
  } while (0)
