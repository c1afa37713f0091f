// Communicator: the collectives the trainer needs, behind one interface (Local for one rank; MPI
// and NCCL implementations join in later issues). All calls are collective over the group and
// blocking unless named *_async. Buffers are host memory.
#pragma once
#include <cstdint>
#include <memory>

namespace moe {

// A started non-blocking collective. wait() blocks until it completes; the destructor waits too.
class PendingOp {
 public:
  virtual ~PendingOp() = default;
  virtual void wait() = 0;
  // After wait(): when the collective really ran (now_ms() clock), where the implementation knows
  // (one run by a communication thread). False otherwise: the profiler then counts the whole op as
  // waited for, never as overlapped.
  virtual bool ran_between(double* /*start_ms*/, double* /*end_ms*/) const { return false; }
};

// A PendingOp that is complete when made (the default of the *_async calls that run at once).
class CompletedOp final : public PendingOp {
 public:
  void wait() override {}
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;

  virtual void all_reduce_sum(float* data, int64_t n) = 0;  // in place
  virtual void all_reduce_sum(double* data, int64_t n) = 0;
  virtual void all_reduce_sum(int64_t* data, int64_t n) = 0;
  virtual void all_reduce_max(float* data, int64_t n) = 0;  // in place
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // out: [size * n] receives every rank's n elements in rank order.
  virtual void all_gather(const float* in, float* out, int64_t n) = 0;
  // in: [size * n]; out: [n], the sum over ranks of block `rank` of in.
  virtual void reduce_scatter_sum(const float* in, float* out, int64_t n) = 0;
  // Rank r sends send_counts[r] floats (consecutive, in rank order) and receives recv_counts[r].
  virtual void all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                            const int64_t* recv_counts) = 0;
  // all_to_all_v started without waiting for it: the buffers must not be touched, nor the received
  // data read, until wait() returns (the counts are read before the call returns). Communicators
  // that cannot overlap it run it at once and return a completed op (this default).
  virtual std::unique_ptr<PendingOp> all_to_all_v_async(const float* send, const int64_t* send_counts, float* recv,
                                                        const int64_t* recv_counts) {
    all_to_all_v(send, send_counts, recv, recv_counts);
    return std::make_unique<CompletedOp>();
  }
  // Fixed-size exchange: block r of send (n elements) goes to rank r; recv block r came from rank r.
  virtual void all_to_all(const int64_t* send, int64_t* recv, int64_t n) = 0;
  // Starts an in-place sum all-reduce; the data must not be touched until wait() returns.
  virtual std::unique_ptr<class PendingOp> all_reduce_sum_async(float* data, int64_t n) = 0;
  virtual void barrier() = 0;
  // Ranks with the same color form a group, ordered by key (MPI_Comm_split semantics).
  virtual std::unique_ptr<Communicator> split(int color, int key) = 0;
  // Ends every rank of the job with `code`; never returns.
  [[noreturn]] virtual void abort(int code) = 0;
};

// The one-rank communicator: every collective is the identity.
std::unique_ptr<Communicator> make_local_communicator();

// The communicator over MPI_COMM_WORLD (MPI must be initialised). Defined in mpi_communicator.cpp.
std::unique_ptr<Communicator> make_mpi_world_communicator();

}  // namespace moe
