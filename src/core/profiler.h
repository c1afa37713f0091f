// Step profiler: wall time per named phase, summed over one optimizer step. Phases may nest (a
// collective inside attention's forward): each phase is charged its exclusive time (its own time
// minus its children's), so the phases of a step add up to the time they cover; what none covers
// is reported as "other". An opaque phase (evaluation, checkpoint) is charged its whole time: the
// phases inside it are traced but not counted as the step's own forward/backward work. Optionally
// records every scope as a trace event (Chrome trace format) for a window of steps. Main training
// thread only.
#pragma once
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace moe {

struct TraceEvent {
  const char* name;
  double start_us;
  double dur_us;
};

class Profiler {
 public:
  static Profiler& instance();
  // Returns the phases of the step so far (exclusive milliseconds), in first-seen order; resets them.
  std::vector<std::pair<std::string, double>> take();
  void set_enabled(bool on) { enabled_ = on; }
  bool enabled() const { return enabled_; }
  void set_tracing(bool on) { tracing_ = on; }
  bool tracing() const { return tracing_; }
  std::vector<TraceEvent> take_trace();
  // Bytes a collective of the main thread moves (sent by this rank), charged to the innermost open
  // phase; calls from other threads (the checkpoint writer) are ignored.
  void add_bytes(double bytes);
  std::vector<std::pair<std::string, double>> take_bytes();
  void set_main_thread();  // the thread whose phases are profiled (the first user by default)
  // The innermost phase running now on the main thread ("" outside any); read by the watchdog.
  static std::atomic<const char*>& current_phase();

  // A non-blocking collective that ran in [start_ms, end_ms] on a communication thread while the
  // main thread went on, and that the main thread started waiting for at wait_start_ms: the part
  // before the wait ran behind compute (overlapped); the rest is inside the waiting phase already
  // (exposed). Shown on the trace's communication track under `name` (a string literal).
  void async_comm(const char* name, double start_ms, double end_ms, double wait_start_ms);
  double take_overlapped_ms();  // overlapped communication of the step so far; resets it
  int64_t take_scope_count();   // counted scopes closed so far (for the overhead estimate); resets it

  // Used by ScopedPhase.
  void enter(bool opaque);
  void leave(const char* phase, double start_ms, double end_ms);

 private:
  void add(const char* phase, double ms);
  std::vector<std::pair<std::string, double>> phases_, bytes_;
  std::thread::id main_thread_ = std::this_thread::get_id();
  struct Frame {
    double child_ms = 0;  // time spent in its (counted) children
    bool opaque = false;
  };
  std::vector<Frame> frames_;  // open scopes, innermost last
  int opaque_open_ = 0;
  std::vector<TraceEvent> trace_;
  double overlapped_ms_ = 0;
  int64_t scopes_ = 0;
  bool enabled_ = true;
  bool tracing_ = false;
};

double now_ms();

// With the profiler off (profile.enabled: false) a scope only names the running phase for the
// watchdog (one atomic store each way): no clock is read and nothing is recorded.
class ScopedPhase {
 public:
  explicit ScopedPhase(const char* phase, bool opaque = false)
      : phase_(phase), previous_(Profiler::current_phase().exchange(phase)), on_(Profiler::instance().enabled()) {
    if (!on_) return;
    start_ = now_ms();
    Profiler::instance().enter(opaque);
  }
  ~ScopedPhase() {
    if (on_) Profiler::instance().leave(phase_, start_, now_ms());
    Profiler::current_phase() = previous_;
  }
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  const char* phase_;
  const char* previous_;
  bool on_;
  double start_ = 0;
};

// Phases that are communication (collectives and waits for them): the trace's communication
// track, and the exposed communication time of a step.
bool is_communication_phase(const std::string& name);

}  // namespace moe
