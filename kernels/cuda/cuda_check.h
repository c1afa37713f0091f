// Error checks and launch helpers shared by the CUDA kernels (kernels/cuda/*.cu). Every CUDA or
// cuBLAS failure throws moe::Error naming the call, the file and the line.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"

#define MOE_CUDA_CHECK(call)                                                                                   \
  do {                                                                                                         \
    cudaError_t moe_err_ = (call);                                                                             \
    MOE_CHECK(moe_err_ == cudaSuccess,                                                                         \
              "CUDA: " #call " failed at " << __FILE__ << ":" << __LINE__ << ": " << cudaGetErrorString(moe_err_)); \
  } while (0)

#define MOE_CUBLAS_CHECK(call)                                                                                 \
  do {                                                                                                         \
    cublasStatus_t moe_st_ = (call);                                                                           \
    MOE_CHECK(moe_st_ == CUBLAS_STATUS_SUCCESS, "cuBLAS: " #call " failed at " << __FILE__ << ":" << __LINE__  \
                                                    << ": " << cublasGetStatusString(moe_st_));               \
  } while (0)

// kernel<<<grid, threads, dynamic_smem_bytes, stream>>>(args...), written
// MOE_LAUNCH(grid, threads, dynamic_smem_bytes, stream, kernel)(args...) so that the CUDA emulation
// (tests/emulation/, MOE_CUDA_EMULATION) can run the same source on the CPU.
#ifdef MOE_CUDA_EMULATION
#define MOE_LAUNCH(grid, threads, smem_bytes, stream, ...) \
  ::moe::emu::launcher(grid, threads, smem_bytes, stream, __VA_ARGS__)
#else
#define MOE_LAUNCH(grid, threads, smem_bytes, stream, ...) __VA_ARGS__<<<grid, threads, smem_bytes, stream>>>
#endif

// A kernel launch's own error (bad configuration), checked right after the launch.
#define MOE_CUDA_LAUNCHED() MOE_CUDA_CHECK(cudaGetLastError())

namespace moe::cuda {

constexpr int kThreads = 256;
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b));
}

}  // namespace moe::cuda
