// SwiGLU on the GPU (twin of kernels/cpu/swiglu.cpp).
#include <cuda_bf16.h>

#include <cstdint>

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
using bf16x2 = __nv_bfloat162;

// bf16 two at a time (4-byte accesses); the same arithmetic per element as above.
__global__ void swiglu_fwd_x2(const bf16x2* g, const bf16x2* u, bf16x2* h, int64_t n2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n2; i += int64_t(gridDim.x) * blockDim.x) {
    const float2 x = __bfloat1622float2(g[i]), uu = __bfloat1622float2(u[i]);
    h[i] = __floats2bfloat162_rn(x.x * sigmoidf(x.x) * uu.x, x.y * sigmoidf(x.y) * uu.y);
  }
}
__global__ void swiglu_bwd_x2(const bf16x2* g, const bf16x2* u, const bf16x2* dh, bf16x2* dg, bf16x2* du, int64_t n2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n2; i += int64_t(gridDim.x) * blockDim.x) {
    // every input read before either output is written: dg / du may alias g / u (in place)
    const float2 x = __bfloat1622float2(g[i]), ui = __bfloat1622float2(u[i]), d = __bfloat1622float2(dh[i]);
    const float sx = sigmoidf(x.x), sy = sigmoidf(x.y), silux = x.x * sx, siluy = x.y * sy;
    du[i] = __floats2bfloat162_rn(d.x * silux, d.y * siluy);
    dg[i] = __floats2bfloat162_rn(d.x * ui.x * (sx + silux * (1.0f - sx)), d.y * ui.y * (sy + siluy * (1.0f - sy)));
  }
}

bool pairs_ok(int64_t n, const void* a, const void* b, const void* c, const void* d = nullptr,
              const void* e = nullptr) {
  for (const void* p : {a, b, c, d, e})
    if (p && reinterpret_cast<uintptr_t>(p) % 4 != 0) return false;
  return n % 2 == 0;
}

}  // namespace

void swiglu_forward(const float* g, const float* u, float* h, int64_t n, Stream stream) {
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, swiglu_fwd<float>)(g, u, h, n);
  MOE_CUDA_LAUNCHED();
}
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n, Stream stream) {
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, swiglu_bwd<float>)(g, u, dh, dg, du, n);
  MOE_CUDA_LAUNCHED();
}
void swiglu_forward_bf16(const void* g, const void* u, void* h, int64_t n, Stream stream) {
  if (pairs_ok(n, g, u, h)) {
    MOE_LAUNCH(blocks_for(n / 2), kThreads, 0, stream, swiglu_fwd_x2)
    (static_cast<const bf16x2*>(g), static_cast<const bf16x2*>(u), static_cast<bf16x2*>(h), n / 2);
  } else {
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, swiglu_fwd<bf16>)
    (static_cast<const bf16*>(g), static_cast<const bf16*>(u), static_cast<bf16*>(h), n);
  }
  MOE_CUDA_LAUNCHED();
}
void swiglu_backward_bf16(const void* g, const void* u, const void* dh, void* dg, void* du, int64_t n, Stream stream) {
  if (pairs_ok(n, g, u, dh, dg, du)) {
    MOE_LAUNCH(blocks_for(n / 2), kThreads, 0, stream, swiglu_bwd_x2)
    (static_cast<const bf16x2*>(g), static_cast<const bf16x2*>(u), static_cast<const bf16x2*>(dh),
     static_cast<bf16x2*>(dg), static_cast<bf16x2*>(du), n / 2);
  } else {
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, swiglu_bwd<bf16>)
    (static_cast<const bf16*>(g), static_cast<const bf16*>(u), static_cast<const bf16*>(dh), static_cast<bf16*>(dg),
     static_cast<bf16*>(du), n);
  }
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
