// moe::Error: the message a user reads, with the throwing file:line kept for developers.
#include "core/error.h"

namespace moe {

static std::string short_file(const char* file) {
  std::string path(file);
  for (const char* root : {"/src/", "/kernels/", "/tests/"}) {
    auto pos = path.rfind(root);
    if (pos != std::string::npos) return path.substr(pos + 1);
  }
  return path;
}

Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(message + " [" + short_file(file) + ":" + std::to_string(line) + "]"),
      message_(message),
      location_(short_file(file) + ":" + std::to_string(line)) {}

}  // namespace moe
