// SwiGLU activation, element-wise: h = silu(g) * u.  g, u, h: [n].
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void swiglu_forward(const float* g, const float* u, float* h, int64_t n);
// dg = dh * u * silu'(g), du = dh * silu(g); both assigned.
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n);

// ---- CUDA twin (kernels/cuda/swiglu.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void swiglu_forward(const float* g, const float* u, float* h, int64_t n, Stream stream = nullptr);
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n,
                     Stream stream = nullptr);
// bf16 activations (bf16 training): every array __nv_bfloat16, arithmetic in fp32. dg, du may
// alias g, u (the backward in place).
void swiglu_forward_bf16(const void* g, const void* u, void* h, int64_t n, Stream stream = nullptr);
void swiglu_backward_bf16(const void* g, const void* u, const void* dh, void* dg, void* du, int64_t n,
                          Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
