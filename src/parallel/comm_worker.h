// A background thread that runs communication jobs one at a time, in the order they were queued,
// and records when each one really ran. Non-blocking collectives go through it so they make
// progress while the main thread computes (MPI libraries progress a non-blocking collective only
// inside MPI calls), and so the profiler can tell the part of a collective hidden behind compute
// from the part the main thread waited for.
//
// Ordering: jobs run in queue order on one thread. Every rank queues its collectives in the same
// order (as it would call blocking ones), so the collectives of one group meet in the same order
// on every member, whatever other groups' jobs are queued in between.
#pragma once
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace moe {

class CommWorker {
 public:
  struct Ticket {
    double start_ms = 0, end_ms = 0;  // when the job ran (steady clock, now_ms())
    bool done = false;
    std::exception_ptr error;
  };

  CommWorker();
  ~CommWorker();  // runs what is queued, then joins
  CommWorker(const CommWorker&) = delete;
  CommWorker& operator=(const CommWorker&) = delete;

  std::shared_ptr<Ticket> submit(std::function<void()> job);
  // Blocks until the job is done; rethrows its exception.
  void wait(const std::shared_ptr<Ticket>& ticket);

 private:
  void loop();
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::pair<std::function<void()>, std::shared_ptr<Ticket>>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace moe
