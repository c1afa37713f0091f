// NCCL communicator: collectives on device buffers over NCCL, on a dedicated stream ordered after
// the compute queued on the default stream (an event per call), so a gradient all-reduce runs
// while the next kernels compute. The unique id is made by rank 0 and broadcast over MPI.
#include <cuda_runtime.h>
#include <nccl.h>

#include "core/error.h"
#include "parallel/gpu/device_communicators.h"

namespace moe {
namespace {

void check_cuda(cudaError_t e, const char* what) {
  MOE_CHECK(e == cudaSuccess, "NCCL communicator: " << what << ": " << cudaGetErrorString(e));
}
void check_nccl(ncclResult_t r, const char* what) {
  MOE_CHECK(r == ncclSuccess, "NCCL " << what << " failed: " << ncclGetErrorString(r));
}

// Completes when the collective queued before it on the communicator's stream is done.
class StreamPending final : public PendingOp {
 public:
  explicit StreamPending(cudaStream_t stream) {
    check_cuda(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "event");
    check_cuda(cudaEventRecord(done_, stream), "event record");
  }
  ~StreamPending() override {
    cudaEventSynchronize(done_);
    cudaEventDestroy(done_);
  }
  void wait() override { check_cuda(cudaEventSynchronize(done_), "wait for the collective"); }

 private:
  cudaEvent_t done_;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, Communicator& mpi) : comm_(comm), rank_(rank), size_(size), mpi_(mpi) {
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
    check_cuda(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming), "event");
  }
  ~NcclCommunicator() override {
    cudaStreamSynchronize(stream_);
    ncclCommDestroy(comm_);
    cudaEventDestroy(compute_done_);
    cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void all_reduce_sum(float* d, int64_t n) override { reduce(d, n, ncclFloat32, ncclSum); }
  void all_reduce_sum(double* d, int64_t n) override { reduce(d, n, ncclFloat64, ncclSum); }
  void all_reduce_sum(int64_t* d, int64_t n) override { reduce(d, n, ncclInt64, ncclSum); }
  void all_reduce_max(float* d, int64_t n) override { reduce(d, n, ncclFloat32, ncclMax); }
  void broadcast(void* data, int64_t bytes, int root) override {
    after_compute();
    check_nccl(ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, comm_, stream_), "broadcast");
    finish();
  }
  void all_gather(const float* in, float* out, int64_t n) override {
    after_compute();
    check_nccl(ncclAllGather(in, out, size_t(n), ncclFloat32, comm_, stream_), "all_gather");
    finish();
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    after_compute();
    check_nccl(ncclReduceScatter(in, out, size_t(n), ncclFloat32, ncclSum, comm_, stream_), "reduce_scatter");
    finish();
  }
  void all_to_all_v(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override {
    queue_all_to_all_v(send, send_counts, recv, recv_counts);
    finish();
  }
  // On the communicator's stream after the compute queued so far; the host goes on at once, so the
  // kernels it queues next (another chunk's experts) run while the exchange does.
  std::unique_ptr<PendingOp> all_to_all_v_async(const float* send, const int64_t* send_counts, float* recv,
                                                const int64_t* recv_counts) override {
    queue_all_to_all_v(send, send_counts, recv, recv_counts);
    issued();
    return std::make_unique<StreamPending>(stream_);
  }
  void all_to_all(const int64_t* send, int64_t* recv, int64_t n) override {
    after_compute();
    check_nccl(ncclGroupStart(), "group start");
    for (int r = 0; r < size_; ++r) {
      check_nccl(ncclSend(send + r * n, size_t(n), ncclInt64, r, comm_, stream_), "send");
      check_nccl(ncclRecv(recv + r * n, size_t(n), ncclInt64, r, comm_, stream_), "recv");
    }
    check_nccl(ncclGroupEnd(), "group end");
    finish();
  }
  std::unique_ptr<PendingOp> all_reduce_sum_async(float* data, int64_t n) override {
    after_compute();
    check_nccl(ncclAllReduce(data, data, size_t(n), ncclFloat32, ncclSum, comm_, stream_), "all_reduce");
    issued();
    return std::make_unique<StreamPending>(stream_);
  }
  void barrier() override {
    after_compute();
    check_cuda(cudaStreamSynchronize(stream_), "barrier");
    mpi_.barrier();
  }
  std::unique_ptr<Communicator> split(int color, int key) override {
    ncclComm_t sub = nullptr;
    check_nccl(ncclCommSplit(comm_, color, key, &sub, nullptr), "comm_split");
    int r = 0, n = 0;
    check_nccl(ncclCommUserRank(sub, &r), "user rank");
    check_nccl(ncclCommCount(sub, &n), "count");
    return std::make_unique<NcclCommunicator>(sub, r, n, mpi_);
  }
  [[noreturn]] void abort(int code) override {
    ncclCommAbort(comm_);
    mpi_.abort(code);
    std::abort();  // not reached
  }

 private:
  // The collective sees everything the default stream has queued before it, and runs after the
  // previous NCCL operation of this process on any communicator (NCCL: operations of different
  // communicators running at once can hang the ranks; every rank issues them in the same order).
  void after_compute() {
    check_cuda(cudaEventRecord(compute_done_, cudaStreamLegacy), "event record");
    check_cuda(cudaStreamWaitEvent(stream_, compute_done_, 0), "stream wait");
    if (last_op().recorded) check_cuda(cudaStreamWaitEvent(stream_, last_op().event, 0), "wait for the previous NCCL op");
  }
  // After an operation is queued: the next one, on whichever communicator, waits for it.
  void issued() {
    LastOp& last = last_op();
    if (!last.event) check_cuda(cudaEventCreateWithFlags(&last.event, cudaEventDisableTiming), "event");
    check_cuda(cudaEventRecord(last.event, stream_), "event record");
    last.recorded = true;
  }
  void queue_all_to_all_v(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) {
    after_compute();
    check_nccl(ncclGroupStart(), "group start");
    int64_t so = 0, ro = 0;
    for (int r = 0; r < size_; ++r) {
      if (send_counts[r] > 0) check_nccl(ncclSend(send + so, size_t(send_counts[r]), ncclFloat32, r, comm_, stream_), "send");
      if (recv_counts[r] > 0) check_nccl(ncclRecv(recv + ro, size_t(recv_counts[r]), ncclFloat32, r, comm_, stream_), "recv");
      so += send_counts[r];
      ro += recv_counts[r];
    }
    check_nccl(ncclGroupEnd(), "group end");
  }
  void finish() {
    issued();
    check_cuda(cudaStreamSynchronize(stream_), "collective");
  }
  struct LastOp {
    cudaEvent_t event = nullptr;  // recorded after the latest NCCL operation queued by this process
    bool recorded = false;
  };
  static LastOp& last_op() {
    static LastOp last;  // one GPU per process; the event lives until the process ends
    return last;
  }
  template <class T>
  void reduce(T* d, int64_t n, ncclDataType_t type, ncclRedOp_t op) {
    after_compute();
    check_nccl(ncclAllReduce(d, d, size_t(n), type, op, comm_, stream_), "all_reduce");
    finish();
  }

  ncclComm_t comm_;
  int rank_, size_;
  Communicator& mpi_;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t compute_done_ = nullptr;
};

}  // namespace

bool nccl_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& group) {
  int devices = 0;
  check_cuda(cudaGetDeviceCount(&devices), "no CUDA device");
  const int local = node_local_rank(group.rank());
  float ranks_here = float(local + 1);  // over the group: the ranks on the busiest node
  group.all_reduce_max(&ranks_here, 1);
  MOE_CHECK(int(ranks_here) <= devices, "NCCL communicator: " << int(ranks_here) << " ranks on a node with " << devices
                                                         << " GPU(s); NCCL needs one GPU per rank: use the "
                                                            "host-staged communicator to share GPUs");
  check_cuda(cudaSetDevice(local % devices), "select the GPU");
  ncclUniqueId id;
  if (group.rank() == 0) check_nccl(ncclGetUniqueId(&id), "get unique id");
  group.broadcast(&id, sizeof(id), 0);
  ncclComm_t comm = nullptr;
  check_nccl(ncclCommInitRank(&comm, group.size(), id, group.rank()), "comm init");
  return std::make_unique<NcclCommunicator>(comm, group.rank(), group.size(), group);
}

}  // namespace moe
