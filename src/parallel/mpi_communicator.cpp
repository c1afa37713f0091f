// MpiCommunicator: the Communicator over an MPI communicator (Open MPI from Debian). Groups come
// from MPI_Comm_split. A non-blocking all-reduce runs as a blocking MPI_Allreduce on the process's
// communication thread (parallel/comm_worker.h), over a duplicate of the group's communicator so
// it never meets the main thread's collectives; that needs MPI_THREAD_MULTIPLE, and without it the
// all-reduce is an MPI_Iallreduce completed in wait().
#include <mpi.h>

#include <vector>

#include "core/error.h"
#include "core/profiler.h"
#include "parallel/comm_worker.h"
#include "parallel/communicator.h"
#include "parallel/mpi_handle.h"

namespace moe {
namespace {

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  MOE_THROW("MPI " << what << " failed: " << std::string(msg, len));
}

class MpiPending final : public PendingOp {
 public:
  explicit MpiPending(MPI_Request r) : request_(r) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  }
  void wait() override { check_mpi(MPI_Wait(&request_, MPI_STATUS_IGNORE), "wait"); }

 private:
  MPI_Request request_;
};

// A collective run by the communication thread; knows when it ran.
class WorkerPending final : public PendingOp {
 public:
  WorkerPending(CommWorker& worker, std::shared_ptr<CommWorker::Ticket> ticket)
      : worker_(worker), ticket_(std::move(ticket)) {}
  ~WorkerPending() override {
    try {
      if (!waited_) worker_.wait(ticket_);  // the buffer must outlive the collective
    } catch (...) {
    }
  }
  void wait() override {
    waited_ = true;
    worker_.wait(ticket_);
  }
  bool ran_between(double* start_ms, double* end_ms) const override {
    if (!waited_) return false;
    *start_ms = ticket_->start_ms;
    *end_ms = ticket_->end_ms;
    return true;
  }

 private:
  CommWorker& worker_;
  std::shared_ptr<CommWorker::Ticket> ticket_;
  bool waited_ = false;
};

CommWorker& shared_comm_worker() {
  static CommWorker worker;
  return worker;
}

// MPI counts are int; every buffer here is far below 2^31 elements, checked anyway.
int as_count(int64_t n) {
  MOE_CHECK(n >= 0 && n <= int64_t(0x7fffffff), "MPI message of " << n << " elements exceeds the int count limit");
  return int(n);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    if (async_comm_ != MPI_COMM_NULL) MPI_Comm_free(&async_comm_);
    if (owned_) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* data, int64_t n) override { all_reduce(data, n, MPI_FLOAT, MPI_SUM); }
  void all_reduce_sum(double* data, int64_t n) override { all_reduce(data, n, MPI_DOUBLE, MPI_SUM); }
  void all_reduce_sum(int64_t* data, int64_t n) override { all_reduce(data, n, MPI_INT64_T, MPI_SUM); }
  void all_reduce_max(float* data, int64_t n) override { all_reduce(data, n, MPI_FLOAT, MPI_MAX); }
  std::unique_ptr<PendingOp> all_reduce_sum_async(float* data, int64_t n) override {
    Profiler::instance().add_bytes(4.0 * n);
    const int count = as_count(n);
    if (mpi_thread_multiple()) {
      if (async_comm_ == MPI_COMM_NULL) check_mpi(MPI_Comm_dup(comm_, &async_comm_), "comm_dup");  // collective
      MPI_Comm comm = async_comm_;
      auto job = [data, count, comm] {
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, count, MPI_FLOAT, MPI_SUM, comm), "all_reduce (async)");
      };
      return std::make_unique<WorkerPending>(shared_comm_worker(), shared_comm_worker().submit(job));
    }
    MPI_Request r;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, as_count(n), MPI_FLOAT, MPI_SUM, comm_, &r), "iallreduce");
    return std::make_unique<MpiPending>(r);
  }
  void broadcast(void* data, int64_t bytes, int root) override {
    check_mpi(MPI_Bcast(data, as_count(bytes), MPI_BYTE, root, comm_), "broadcast");
  }
  void all_gather(const float* in, float* out, int64_t n) override {
    Profiler::instance().add_bytes(4.0 * n);
    check_mpi(MPI_Allgather(in == out + rank_ * n ? MPI_IN_PLACE : in, as_count(n), MPI_FLOAT, out, as_count(n),
                            MPI_FLOAT, comm_),
              "all_gather");
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    Profiler::instance().add_bytes(4.0 * n * size_);
    check_mpi(MPI_Reduce_scatter_block(in, out, as_count(n), MPI_FLOAT, MPI_SUM, comm_), "reduce_scatter");
  }
  void all_to_all_v(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override {
    std::vector<int> sc(size_), sd(size_), rc(size_), rd(size_);
    int64_t so = 0, ro = 0;
    for (int r = 0; r < size_; ++r) so += r == rank_ ? 0 : send_counts[r];
    Profiler::instance().add_bytes(4.0 * so);  // what leaves this rank
    so = 0;
    for (int r = 0; r < size_; ++r) {
      sc[r] = as_count(send_counts[r]);
      rc[r] = as_count(recv_counts[r]);
      sd[r] = as_count(so);
      rd[r] = as_count(ro);
      so += send_counts[r];
      ro += recv_counts[r];
    }
    check_mpi(MPI_Alltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(), MPI_FLOAT, comm_),
              "all_to_all_v");
  }
  void all_to_all(const int64_t* send, int64_t* recv, int64_t n) override {
    Profiler::instance().add_bytes(8.0 * n * (size_ - 1));
    check_mpi(MPI_Alltoall(send, as_count(n), MPI_INT64_T, recv, as_count(n), MPI_INT64_T, comm_), "all_to_all");
  }
  void barrier() override { check_mpi(MPI_Barrier(comm_), "barrier"); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    MPI_Comm sub;
    check_mpi(MPI_Comm_split(comm_, color, key, &sub), "comm_split");
    return std::make_unique<MpiCommunicator>(sub, true);
  }
  MPI_Comm comm() const { return comm_; }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(comm_, code);
    std::abort();
  }

 private:
  // In-place all-reduce of n elements of `type` (counted as sent bytes by the profiler).
  template <class T>
  void all_reduce(T* data, int64_t n, MPI_Datatype type, MPI_Op op) {
    Profiler::instance().add_bytes(double(sizeof(T)) * n);
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, as_count(n), type, op, comm_), "all_reduce");
  }

  MPI_Comm comm_;
  MPI_Comm async_comm_ = MPI_COMM_NULL;  // duplicate for the communication thread's collectives
  bool owned_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_comm_of(Communicator& c, MPI_Comm* out) {
  auto* m = dynamic_cast<MpiCommunicator*>(&c);
  if (!m) return false;
  *out = m->comm();
  return true;
}

bool mpi_thread_multiple() {
  int initialized = 0, level = MPI_THREAD_SINGLE;
  MPI_Initialized(&initialized);
  if (!initialized) return false;
  MPI_Query_thread(&level);
  return level >= MPI_THREAD_MULTIPLE;
}

std::unique_ptr<Communicator> make_mpi_world_communicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  MOE_CHECK(initialized, "MPI is not initialised (call MPI_Init first)");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, false);
}

}  // namespace moe
