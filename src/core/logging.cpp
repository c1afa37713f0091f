// spdlog-backed logging: console for every rank, <out_dir>/train.log for rank 0.
#include "core/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdarg>
#include <memory>
#include <vector>

namespace moe {

static std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance;
  if (!instance) {
    instance = std::make_shared<spdlog::logger>("moe", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    instance->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  return instance;
}

void init_logging(int rank, const std::string& log_file) {
  std::vector<spdlog::sink_ptr> sinks;
  sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (rank == 0 && !log_file.empty()) {
    sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(log_file, /*truncate=*/false));
  }
  auto next = std::make_shared<spdlog::logger>("moe", sinks.begin(), sinks.end());
  next->set_pattern(rank == 0 ? "%Y-%m-%d %H:%M:%S.%e %^%l%$ %v"
                              : "%Y-%m-%d %H:%M:%S.%e %^%l%$ [rank " + std::to_string(rank) + "] %v");
  next->set_level(rank == 0 ? spdlog::level::info : spdlog::level::warn);
  next->flush_on(spdlog::level::info);
  logger() = next;
}

void shutdown_logging() { logger()->flush(); }

void log_info(const std::string& msg) { logger()->info(msg); }
void log_warn(const std::string& msg) { logger()->warn(msg); }
void log_error(const std::string& msg) { logger()->error(msg); }
void log_debug(const std::string& msg) { logger()->debug(msg); }

std::string strformat(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  std::string out(n > 0 ? n : 0, '\0');
  if (n > 0) std::vsnprintf(out.data(), n + 1, fmt, args);
  va_end(args);
  return out;
}

}  // namespace moe
