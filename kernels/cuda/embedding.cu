// Embedding lookup on the GPU (twin of kernels/cpu/embedding.cpp).
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/vectorized.cuh"
#include "kernels/embedding.h"

namespace moe::cuda {
namespace {

// One block per token; V = float4 where D allows it. A token id < 0 gives a row of zeros.
template <class V>
__global__ void embedding_fwd(const int32_t* tokens, const V* table, V* out, int64_t T, int64_t Dv) {
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const int32_t id = tokens[t];
    for (int64_t c = threadIdx.x; c < Dv; c += blockDim.x) out[t * Dv + c] = id < 0 ? zero_of<V>() : table[id * Dv + c];
  }
}

// Repeated tokens add into the same row: atomics (the order of the additions is not fixed).
__global__ void embedding_bwd(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D) {
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const int32_t id = tokens[t];
    if (id < 0) continue;
    for (int64_t c = threadIdx.x; c < D; c += blockDim.x) atomicAdd(dtable + int64_t(id) * D + c, dout[t * D + c]);
  }
}

}  // namespace

void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t T, int64_t D, Stream stream) {
  if (vector4_ok(D, table, out)) {
    MOE_LAUNCH(row_blocks(T), kThreads, 0, stream, embedding_fwd<float4>)
    (tokens, reinterpret_cast<const float4*>(table), reinterpret_cast<float4*>(out), T, D / 4);
  } else {
    MOE_LAUNCH(row_blocks(T), kThreads, 0, stream, embedding_fwd<float>)(tokens, table, out, T, D);
  }
  MOE_CUDA_LAUNCHED();
}
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D, Stream stream) {
  MOE_LAUNCH(row_blocks(T), kThreads, 0, stream, embedding_bwd)(tokens, dout, dtable, T, D);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
