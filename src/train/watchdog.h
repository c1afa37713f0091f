// Stall watchdog: a thread that ends the whole job, with a message naming the rank, the step and
// the phase, when a training step runs far past its usual time (a hung collective, a dead peer the
// MPI runtime did not notice, a deadlock). Limit: max(min_seconds, factor x the longest step so
// far). MOE_WATCHDOG_SECONDS overrides min_seconds; 0 turns the watchdog off.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "parallel/communicator.h"

namespace moe {

class Watchdog {
 public:
  Watchdog(Communicator& world, double min_seconds = 600.0, double factor = 20.0);
  ~Watchdog();
  void step_started(int64_t step);
  void step_finished(double step_ms);

 private:
  void loop();

  Communicator& world_;
  double min_seconds_, factor_;
  double longest_ms_ = 0;
  std::atomic<int64_t> step_{-1};
  std::atomic<double> started_ms_{0};
  std::atomic<bool> running_{false};
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace moe
