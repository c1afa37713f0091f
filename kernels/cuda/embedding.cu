// Embedding lookup on the GPU (twin of kernels/cpu/embedding.cpp).
#include "kernels/cuda/cuda_check.h"
#include "kernels/embedding.h"

namespace moe::cuda {
namespace {

__global__ void embedding_fwd(const int32_t* tokens, const float* table, float* out, int64_t T, int64_t D) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * D; i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t id = tokens[i / D];
    out[i] = id < 0 ? 0.0f : table[int64_t(id) * D + i % D];
  }
}
// Repeated tokens add into the same row: atomics (the order of the additions is not fixed).
__global__ void embedding_bwd(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < T * D; i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t id = tokens[i / D];
    if (id >= 0) atomicAdd(dtable + int64_t(id) * D + i % D, dout[i]);
  }
}

}  // namespace

void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t T, int64_t D, Stream stream) {
  embedding_fwd<<<blocks_for(T * D), kThreads, 0, stream>>>(tokens, table, out, T, D);
  MOE_CUDA_LAUNCHED();
}
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D, Stream stream) {
  embedding_bwd<<<blocks_for(T * D), kThreads, 0, stream>>>(tokens, dout, dtable, T, D);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
