// SwiGLU on the GPU (twin of kernels/cpu/swiglu.cpp).
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/swiglu.h"

namespace moe::cuda {
namespace {

__device__ inline float sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }

template <class T>
__global__ void swiglu_fwd(const T* g, const T* u, T* h, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float x = float(g[i]);
    h[i] = T(x * sigmoidf(x) * float(u[i]));
  }
}
template <class T>
__global__ void swiglu_bwd(const T* g, const T* u, const T* dh, T* dg, T* du, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    // every input read before either output is written: dg / du may alias g / u (in place)
    const float x = float(g[i]), ui = float(u[i]), d = float(dh[i]), s = sigmoidf(x), silu = x * s;
    du[i] = T(d * silu);
    dg[i] = T(d * ui * (s + silu * (1.0f - s)));
  }
}

using bf16 = __nv_bfloat16;

}  // namespace

void swiglu_forward(const float* g, const float* u, float* h, int64_t n, Stream stream) {
  swiglu_fwd<float><<<blocks_for(n), kThreads, 0, stream>>>(g, u, h, n);
  MOE_CUDA_LAUNCHED();
}
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n, Stream stream) {
  swiglu_bwd<float><<<blocks_for(n), kThreads, 0, stream>>>(g, u, dh, dg, du, n);
  MOE_CUDA_LAUNCHED();
}
void swiglu_forward_bf16(const void* g, const void* u, void* h, int64_t n, Stream stream) {
  swiglu_fwd<bf16><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const bf16*>(g), static_cast<const bf16*>(u),
                                                           static_cast<bf16*>(h), n);
  MOE_CUDA_LAUNCHED();
}
void swiglu_backward_bf16(const void* g, const void* u, const void* dh, void* dg, void* du, int64_t n, Stream stream) {
  swiglu_bwd<bf16><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const bf16*>(g), static_cast<const bf16*>(u),
                                                           static_cast<const bf16*>(dh), static_cast<bf16*>(dg),
                                                           static_cast<bf16*>(du), n);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
