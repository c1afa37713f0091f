// Background checkpoint writer.
#include "train/async_checkpoint.h"

#include "core/profiler.h"

namespace moe {

AsyncCheckpointWriter::AsyncCheckpointWriter(std::unique_ptr<Communicator> io_world, bool background,
                                             std::function<void(const std::string&, double)> on_done)
    : io_(std::move(io_world)), background_(background), on_done_(std::move(on_done)) {}

AsyncCheckpointWriter::~AsyncCheckpointWriter() {
  if (thread_.joinable()) thread_.join();
}

void AsyncCheckpointWriter::finish() {
  if (thread_.joinable()) thread_.join();
  if (error_) {
    auto e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void AsyncCheckpointWriter::submit(const std::string& dir, CheckpointSnapshot snapshot, int keep) {
  finish();
  auto job = [this, dir, keep, snap = std::move(snapshot)]() mutable {
    try {
      const double t0 = now_ms();
      std::string path = write_checkpoint(dir, snap, keep, io_.get());
      if (on_done_) on_done_(path, (now_ms() - t0) / 1000.0);
      spare_ = std::move(snap);
    } catch (...) {
      error_ = std::current_exception();
    }
  };
  if (background_) {
    thread_ = std::thread(std::move(job));
  } else {
    job();
    finish();
  }
}

}  // namespace moe
