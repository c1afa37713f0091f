// SwiGLU activation on the CPU.
#include "kernels/swiglu.h"

#include <cmath>

namespace moe {

void swiglu_forward(const float* g, const float* u, float* h, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float sg = 1.0f / (1.0f + std::exp(-g[i]));
    h[i] = g[i] * sg * u[i];
  }
}

void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float x = g[i];
    float sg = 1.0f / (1.0f + std::exp(-x));
    float silu = x * sg;
    float dsilu = sg * (1.0f + x * (1.0f - sg));
    float d = dh[i];
    dg[i] = d * u[i] * dsilu;
    du[i] = d * silu;
  }
}

}  // namespace moe
