// SwiGLU on the GPU (twin of kernels/cpu/swiglu.cpp).
#include "kernels/cuda/cuda_check.h"
#include "kernels/swiglu.h"

namespace moe::cuda {
namespace {

__device__ inline float sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }

__global__ void swiglu_fwd(const float* g, const float* u, float* h, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    h[i] = g[i] * sigmoidf(g[i]) * u[i];
}
__global__ void swiglu_bwd(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float s = sigmoidf(g[i]), silu = g[i] * s, d = dh[i];
    du[i] = d * silu;
    dg[i] = d * u[i] * (s + silu * (1.0f - s));
  }
}

}  // namespace

void swiglu_forward(const float* g, const float* u, float* h, int64_t n, Stream stream) {
  swiglu_fwd<<<blocks_for(n), kThreads, 0, stream>>>(g, u, h, n);
  MOE_CUDA_LAUNCHED();
}
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n, Stream stream) {
  swiglu_bwd<<<blocks_for(n), kThreads, 0, stream>>>(g, u, dh, dg, du, n);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
