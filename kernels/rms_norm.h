// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w.  x, y: [T, D]; w: [D]; rstd: [T] (saved).
#pragma once
#include <cstdint>

namespace moe {

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t T, int64_t D, float eps);
// dx assigned, dw accumulated. Deterministic for any thread count.
void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t T, int64_t D);

}  // namespace moe
