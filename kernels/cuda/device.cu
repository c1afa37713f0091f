// CUDA device helpers.
#include <cuda_bf16.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"

#include <cstdint>

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

namespace {

// An allocation the GPU cannot hold: what was asked, what is free, and what to change.
void check_allocation(cudaError_t e, size_t bytes, const char* call) {
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it
    size_t free_bytes = 0, total = 0;
    cudaMemGetInfo(&free_bytes, &total);
    MOE_THROW("GPU out of memory: " << call << " of " << bytes / 1048576 << " MiB with " << free_bytes / 1048576
                                    << " MiB free of " << total / 1048576 << " MiB on " << device_name()
                                    << ". The model keeps 18 bytes per parameter on each GPU (fp32 weight, gradient "
                                       "and two AdamW moments, a bf16 copy) plus activations that grow with "
                                       "train.micro_batch x train.seq_len: lower train.micro_batch (train.global_batch "
                                       "stays, through more accumulation steps) or the model size");
  }
  MOE_CHECK(e == cudaSuccess, "CUDA: " << call << " of " << bytes << " bytes failed: " << cudaGetErrorString(e));
}

}  // namespace

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  check_allocation(cudaMalloc(&p, bytes), bytes, "cudaMalloc");
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void* stream_alloc(size_t bytes, Stream stream) {
  static const bool pool_kept = [] {  // once per process (one device per process)
    int dev = 0;
    MOE_CUDA_CHECK(cudaGetDevice(&dev));
    cudaMemPool_t pool;
    MOE_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t keep = UINT64_MAX;
    MOE_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    return true;
  }();
  (void)pool_kept;
  void* p = nullptr;
  check_allocation(cudaMallocAsync(&p, bytes, stream), bytes, "cudaMallocAsync");
  return p;
}

void stream_free(void* p, Stream stream) noexcept {
  if (p) cudaFreeAsync(p, stream);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  MOE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  MOE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes) MOE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, nullptr));
}

void zero_device(void* p, size_t bytes) {
  if (bytes) MOE_CUDA_CHECK(cudaMemset(p, 0, bytes));
}

void synchronize() { MOE_CUDA_CHECK(cudaDeviceSynchronize()); }
size_t free_device_memory() {
  size_t free_bytes = 0, total = 0;
  MOE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total));
  return free_bytes;
}

namespace {

template <class T>
__global__ void fill_random(T* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
    x[i] = T(float(h) * 2.3283064e-10f - 0.5f);
  }
}

}  // namespace

void* random_device(int64_t n, bool bf16, uint32_t seed) {
  void* p = device_alloc(size_t(std::max<int64_t>(n, 1)) * (bf16 ? 2 : 4));
  if (bf16)
    MOE_LAUNCH(blocks_for(n), kThreads, 0, nullptr, fill_random<__nv_bfloat16>)
    (static_cast<__nv_bfloat16*>(p), n, seed);
  else
    MOE_LAUNCH(blocks_for(n), kThreads, 0, nullptr, fill_random<float>)(static_cast<float*>(p), n, seed);
  MOE_CUDA_LAUNCHED();
  return p;
}

double median_ms(const std::function<void()>& run, int reps) {
  cudaEvent_t start, stop;
  MOE_CUDA_CHECK(cudaEventCreate(&start));
  MOE_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<float> ms(size_t(std::max(reps, 1)));
  run();
  for (float& t : ms) {
    MOE_CUDA_CHECK(cudaEventRecord(start));
    run();
    MOE_CUDA_CHECK(cudaEventRecord(stop));
    MOE_CUDA_CHECK(cudaEventSynchronize(stop));
    MOE_CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return double(ms[ms.size() / 2]);
}

}  // namespace moe::cuda
