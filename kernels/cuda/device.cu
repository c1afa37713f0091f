// CUDA device helpers.
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"

namespace moe::cuda {

bool available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver / no device" error
    return false;
  }
  return n > 0;
}

std::string device_name() {
  if (!available()) return "";
  cudaDeviceProp prop;
  int dev = 0;
  MOE_CUDA_CHECK(cudaGetDevice(&dev));
  MOE_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  MOE_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  MOE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  MOE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void zero_device(void* p, size_t bytes) {
  if (bytes) MOE_CUDA_CHECK(cudaMemset(p, 0, bytes));
}

void synchronize() { MOE_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace moe::cuda
