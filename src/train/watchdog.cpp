// Stall watchdog.
#include "train/watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <unistd.h>

#include "core/logging.h"
#include "core/profiler.h"

namespace moe {

Watchdog::Watchdog(Communicator& world, double min_seconds, double factor)
    : world_(world), min_seconds_(min_seconds), factor_(factor) {
  if (const char* env = std::getenv("MOE_WATCHDOG_SECONDS")) min_seconds_ = std::atof(env);
  if (min_seconds_ > 0) thread_ = std::thread([this] { loop(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::step_started(int64_t step) {
  step_ = step;
  started_ms_ = now_ms();
  running_ = true;
}

void Watchdog::step_finished(double step_ms) {
  running_ = false;
  std::lock_guard<std::mutex> lock(mutex_);
  longest_ms_ = std::max(longest_ms_, step_ms);
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::milliseconds(500));
    if (stop_ || !running_) continue;
    const double limit_s = std::max(min_seconds_, factor_ * longest_ms_ / 1000.0);
    const double elapsed_s = (now_ms() - started_ms_) / 1000.0;
    if (elapsed_s <= limit_s) continue;
    const char* phase = Profiler::current_phase().load();
    log_error(strformat("[watchdog] rank %d: step %lld has run %.0f s in phase '%s', past the %.0f s limit "
                        "(longest step so far %.2f s); aborting the job",
                        world_.rank(), (long long)step_.load() + 1, elapsed_s, *phase ? phase : "?", limit_s,
                        longest_ms_ / 1000.0));
    shutdown_logging();
    world_.abort(3);
  }
}

}  // namespace moe
