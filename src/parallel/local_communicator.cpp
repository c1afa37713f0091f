// LocalCommunicator: one rank, collectives are copies (used by single-process runs and tests).
#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "parallel/communicator.h"

namespace moe {
namespace {

class DonePending final : public PendingOp {
 public:
  void wait() override {}
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_reduce_sum(double*, int64_t) override {}
  void all_reduce_sum(int64_t*, int64_t) override {}
  void all_reduce_max(float*, int64_t) override {}
  void broadcast(void*, int64_t, int root) override { MOE_CHECK(root == 0, "broadcast root " << root << " of 1 rank"); }
  void all_gather(const float* in, float* out, int64_t n) override {
    if (in != out) std::memcpy(out, in, sizeof(float) * n);
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    if (in != out) std::memcpy(out, in, sizeof(float) * n);
  }
  void all_to_all_v(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override {
    MOE_CHECK(send_counts[0] == recv_counts[0], "all_to_all_v on one rank: sends " << send_counts[0]
                                                                                 << " but receives " << recv_counts[0]);
    if (send != recv) std::memcpy(recv, send, sizeof(float) * send_counts[0]);
  }
  void all_to_all(const int64_t* send, int64_t* recv, int64_t n) override {
    if (send != recv) std::memcpy(recv, send, sizeof(int64_t) * n);
  }
  std::unique_ptr<PendingOp> all_reduce_sum_async(float*, int64_t) override { return std::make_unique<DonePending>(); }
  void barrier() override {}
  std::unique_ptr<Communicator> split(int, int) override { return std::make_unique<LocalCommunicator>(); }
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

}  // namespace moe
