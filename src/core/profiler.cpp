// Step profiler implementation.
#include "core/profiler.h"

#include <cstring>

namespace moe {

Profiler& Profiler::instance() {
  static Profiler p;
  return p;
}

void Profiler::add(const char* phase, double ms) {
  if (!enabled_) return;
  for (auto& [name, total] : phases_) {
    if (name == phase) {
      total += ms;
      return;
    }
  }
  phases_.emplace_back(phase, ms);
}

std::vector<std::pair<std::string, double>> Profiler::take() {
  auto out = std::move(phases_);
  phases_.clear();
  return out;
}

std::atomic<const char*>& Profiler::current_phase() {
  static std::atomic<const char*> phase{""};
  return phase;
}

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

}  // namespace moe
