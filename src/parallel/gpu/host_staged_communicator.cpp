// Host-staged communicator: device buffers copied to host, the MPI collective, copied back.
#include <cuda_runtime.h>

#include <cstdlib>
#include <vector>

#include "core/error.h"
#include "parallel/gpu/device_communicators.h"

namespace moe {
namespace {

void check(cudaError_t e, const char* what) {
  MOE_CHECK(e == cudaSuccess, "host-staged communicator: " << what << ": " << cudaGetErrorString(e));
}

template <class T>
std::vector<T> to_host(const T* device, int64_t n) {
  std::vector<T> host(size_t(n > 0 ? n : 0));
  if (n > 0) check(cudaMemcpy(host.data(), device, sizeof(T) * n, cudaMemcpyDeviceToHost), "copy to host");
  return host;
}

template <class T>
void to_device(T* device, const std::vector<T>& host) {
  if (!host.empty()) check(cudaMemcpy(device, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice), "copy to device");
}

// The async all-reduce of the inner (MPI) communicator on a host copy; wait() copies the sum back.
class StagedPending final : public PendingOp {
 public:
  StagedPending(std::vector<float> host, float* device, Communicator& inner)
      : host_(std::move(host)), device_(device), pending_(inner.all_reduce_sum_async(host_.data(), int64_t(host_.size()))) {}
  void wait() override {
    pending_->wait();
    to_device(device_, host_);
  }
  bool ran_between(double* start_ms, double* end_ms) const override { return pending_->ran_between(start_ms, end_ms); }

 private:
  std::vector<float> host_;
  float* device_;
  std::unique_ptr<PendingOp> pending_;
};

class HostStagedCommunicator final : public Communicator {
 public:
  HostStagedCommunicator(Communicator& inner, std::unique_ptr<Communicator> owned = nullptr)
      : owned_(std::move(owned)), inner_(owned_ ? *owned_ : inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }

  void all_reduce_sum(float* data, int64_t n) override { staged(data, n, [&](float* h) { inner_.all_reduce_sum(h, n); }); }
  void all_reduce_sum(double* data, int64_t n) override { staged(data, n, [&](double* h) { inner_.all_reduce_sum(h, n); }); }
  void all_reduce_sum(int64_t* data, int64_t n) override { staged(data, n, [&](int64_t* h) { inner_.all_reduce_sum(h, n); }); }
  void all_reduce_max(float* data, int64_t n) override { staged(data, n, [&](float* h) { inner_.all_reduce_max(h, n); }); }
  void broadcast(void* data, int64_t bytes, int root) override {
    auto* p = static_cast<unsigned char*>(data);
    staged(p, bytes, [&](unsigned char* h) { inner_.broadcast(h, bytes, root); });
  }
  void all_gather(const float* in, float* out, int64_t n) override {
    auto hin = to_host(in, n);
    std::vector<float> hout(size_t(n * size()));
    inner_.all_gather(hin.data(), hout.data(), n);
    to_device(out, hout);
  }
  void reduce_scatter_sum(const float* in, float* out, int64_t n) override {
    auto hin = to_host(in, n * size());
    std::vector<float> hout(static_cast<size_t>(n));
    inner_.reduce_scatter_sum(hin.data(), hout.data(), n);
    to_device(out, hout);
  }
  void all_to_all_v(const float* send, const int64_t* send_counts, float* recv, const int64_t* recv_counts) override {
    int64_t ns = 0, nr = 0;
    for (int r = 0; r < size(); ++r) ns += send_counts[r], nr += recv_counts[r];
    auto hs = to_host(send, ns);
    std::vector<float> hr(static_cast<size_t>(nr));
    inner_.all_to_all_v(hs.data(), send_counts, hr.data(), recv_counts);
    to_device(recv, hr);
  }
  void all_to_all(const int64_t* send, int64_t* recv, int64_t n) override {
    auto hs = to_host(send, n * size());
    std::vector<int64_t> hr(size_t(n * size()));
    inner_.all_to_all(hs.data(), hr.data(), n);
    to_device(recv, hr);
  }
  std::unique_ptr<PendingOp> all_reduce_sum_async(float* data, int64_t n) override {
    check(cudaDeviceSynchronize(), "synchronise before the all-reduce");  // the gradients are complete
    return std::make_unique<StagedPending>(to_host(data, n), data, inner_);
  }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<Communicator> split(int color, int key) override {
    auto sub = inner_.split(color, key);
    Communicator& ref = *sub;
    return std::make_unique<HostStagedCommunicator>(ref, std::move(sub));
  }
  [[noreturn]] void abort(int code) override {
    inner_.abort(code);
    std::abort();  // not reached
  }

 private:
  template <class T, class F>
  void staged(T* device, int64_t n, F&& op) {
    check(cudaDeviceSynchronize(), "synchronise before the collective");
    auto host = to_host(device, n);
    op(host.data());
    to_device(device, host);
  }

  std::unique_ptr<Communicator> owned_;
  Communicator& inner_;
};

}  // namespace

std::unique_ptr<Communicator> make_host_staged_communicator(Communicator& group) {
  return std::make_unique<HostStagedCommunicator>(group);
}

}  // namespace moe
