// Logging facade: the only place that includes spdlog. Rank 0 logs at info, other ranks at warn.
#pragma once
#include <string>

namespace moe {

// Sets up the console sink and, when log_file is non-empty, a file sink (rank 0 only writes it).
void init_logging(int rank, const std::string& log_file = "");
void shutdown_logging();

void log_info(const std::string& msg);
void log_warn(const std::string& msg);
void log_error(const std::string& msg);
void log_debug(const std::string& msg);

// printf-style formatting into a std::string.
std::string strformat(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace moe
