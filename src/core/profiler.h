// Step profiler: wall time per named phase, summed over one optimizer step. Phases are flat and
// must not nest (the trainer opens them around disjoint pieces of work), so they add up to the
// step time; what no phase covers is reported as "other".
#pragma once
#include <atomic>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace moe {

class Profiler {
 public:
  static Profiler& instance();
  void add(const char* phase, double ms);
  // Returns the phases of the step so far, in first-seen order, and resets them.
  std::vector<std::pair<std::string, double>> take();
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  // The innermost phase running now on the main thread ("" outside any); read by the watchdog.
  static std::atomic<const char*>& current_phase();

 private:
  std::vector<std::pair<std::string, double>> phases_;
  bool enabled_ = true;
};

double now_ms();

class ScopedPhase {
 public:
  explicit ScopedPhase(const char* phase)
      : phase_(phase), previous_(Profiler::current_phase().exchange(phase)), start_(now_ms()) {}
  ~ScopedPhase() {
    Profiler::instance().add(phase_, now_ms() - start_);
    Profiler::current_phase() = previous_;
  }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  const char* phase_;
  const char* previous_;
  double start_;
};

}  // namespace moe
