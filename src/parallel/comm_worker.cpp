// CommWorker implementation.
#include "parallel/comm_worker.h"

#include "core/profiler.h"

namespace moe {

CommWorker::CommWorker() : thread_([this] { loop(); }) {}

CommWorker::~CommWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

std::shared_ptr<CommWorker::Ticket> CommWorker::submit(std::function<void()> job) {
  auto ticket = std::make_shared<Ticket>();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.emplace_back(std::move(job), ticket);
  }
  changed_.notify_all();
  return ticket;
}

void CommWorker::wait(const std::shared_ptr<Ticket>& ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return ticket->done; });
  if (ticket->error) std::rethrow_exception(ticket->error);
}

void CommWorker::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    auto [job, ticket] = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    const double start = now_ms();
    std::exception_ptr error;
    try {
      job();
    } catch (...) {
      error = std::current_exception();
    }
    const double end = now_ms();
    lock.lock();
    ticket->start_ms = start;
    ticket->end_ms = end;
    ticket->error = error;
    ticket->done = true;
    changed_.notify_all();
  }
}

}  // namespace moe
