// Background checkpoint writer: training stalls only for the snapshot (a copy into host buffers);
// the HDF5 write, fsync and rename run in a thread while the next steps compute. At most one save
// is in flight: submitting the next one, or finish(), waits for the previous. A failure in the
// writer is rethrown by the next submit() or by finish().
// With several ranks the writer uses a communicator of its own (io_world, collective with the
// other ranks' writers), so it never shares one with the training thread; that needs MPI with
// MPI_THREAD_MULTIPLE, otherwise (or with MOE_CKPT_SYNC=1) saves are synchronous.
#pragma once
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "parallel/communicator.h"
#include "train/checkpoint.h"

namespace moe {

class AsyncCheckpointWriter {
 public:
  // on_done(path, seconds) runs in the writer after each successful save.
  AsyncCheckpointWriter(std::unique_ptr<Communicator> io_world, bool background,
                        std::function<void(const std::string&, double)> on_done);
  ~AsyncCheckpointWriter();
  void submit(const std::string& dir, CheckpointSnapshot snapshot, int keep);
  void finish();  // waits for the save in flight; rethrows its failure
  // The buffers of the last completed save, to refill for the next snapshot (empty at first).
  CheckpointSnapshot recycle() { return std::move(spare_); }
  bool background() const { return background_; }

 private:
  std::unique_ptr<Communicator> io_;
  bool background_;
  std::function<void(const std::string&, double)> on_done_;
  std::thread thread_;
  std::exception_ptr error_;
  CheckpointSnapshot spare_;
};

}  // namespace moe
