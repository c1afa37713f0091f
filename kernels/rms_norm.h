// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w.  x, y: [T, D]; w: [D]; rstd: [T] (saved).
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t T, int64_t D, float eps);
// dx assigned, dw accumulated. Deterministic for any thread count.
void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t T, int64_t D);

// ---- CUDA twin (kernels/cuda/rms_norm.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t T, int64_t D, float eps,
                      Stream stream = nullptr);
// dw accumulated with atomics over rows.
void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t T, int64_t D, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
