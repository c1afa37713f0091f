// The CUDA device as the rest of the program sees it, without CUDA headers: whether one is usable,
// device memory that frees itself, copies, and the cuBLAS handle of the calling thread. Defined in
// kernels/cuda/device.cu, which is compiled only when the build has CUDA (MOE_WITH_CUDA).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda_stream.h"

namespace moe::cuda {

// True when at least one CUDA device can be used (false without a GPU or driver; never throws).
bool available();
std::string device_name();  // "" when none

void* device_alloc(size_t bytes);
void device_free(void* p) noexcept;
// Scratch memory in stream order (cudaMallocAsync / cudaFreeAsync on the device's default pool),
// for the buffers a kernel call needs only while it runs. The pool keeps freed memory for reuse
// (release threshold raised at first use): with CUDA's default of 0 it would hand everything back
// at each synchronization and map it again at the next call.
void* stream_alloc(size_t bytes, Stream stream);
void stream_free(void* p, Stream stream) noexcept;
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_on_device(void* dst, const void* src, size_t bytes);  // device -> device, in stream order
void zero_device(void* p, size_t bytes);  // cudaMemset to 0
void synchronize();
size_t free_device_memory();  // bytes cudaMemGetInfo reports free on the current device

// For the implementation choices measured at run time (grouped GEMMs, attention kernels):
// n device values uniform in [-0.5, 0.5) from a hash of (index, seed), fp32 or bf16, in memory the
// caller releases with device_free (a product of zeros runs faster than real data would); and the
// median milliseconds of `run` over `reps` runs after one warm-up, timed with CUDA events.
void* random_device(int64_t n, bool bf16, uint32_t seed);
double median_ms(const std::function<void()>& run, int reps = 3);

// Device memory for n elements of T, freed by the destructor.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(n ? device_alloc(n * sizeof(T)) : nullptr)) {}
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  ~DeviceArray() { device_free(p_); }
  DeviceArray(DeviceArray&& o) noexcept : n_(o.n_), p_(o.p_) { o.n_ = 0, o.p_ = nullptr; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(n_, o.n_);
    std::swap(p_, o.p_);
    return *this;
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  void zero() { zero_device(p_, n_ * sizeof(T)); }
  void upload(const std::vector<T>& host) { copy_to_device(p_, host.data(), host.size() * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> out(n_);
    copy_to_host(out.data(), p_, n_ * sizeof(T));
    return out;
  }

 private:
  size_t n_ = 0;
  T* p_ = nullptr;
};

}  // namespace moe::cuda
