// Step profiler implementation.
#include "core/profiler.h"

namespace moe {

Profiler& Profiler::instance() {
  static Profiler p;
  return p;
}

void Profiler::enter() { child_ms_.push_back(0.0); }

void Profiler::leave(const char* phase, double start_ms, double end_ms) {
  const double total = end_ms - start_ms;
  const double children = child_ms_.empty() ? 0.0 : child_ms_.back();
  if (!child_ms_.empty()) child_ms_.pop_back();
  if (!child_ms_.empty()) child_ms_.back() += total;  // the parent excludes this scope
  add(phase, total - children);
  if (tracing_) trace_.push_back({phase, start_ms * 1000.0, total * 1000.0});
}

void Profiler::add(const char* phase, double ms) {
  if (!enabled_) return;
  for (auto& [name, sum] : phases_) {
    if (name == phase) {
      sum += ms;
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

std::vector<TraceEvent> Profiler::take_trace() {
  auto out = std::move(trace_);
  trace_.clear();
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
