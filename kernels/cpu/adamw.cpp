// AdamW on the CPU, element-wise and parallel.
#include "kernels/adamw.h"

#include <cmath>

namespace moe {

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float bias_correction1, float bias_correction2) {
  const float decay = 1.0f - lr * weight_decay;
  const float step_size = lr / bias_correction1;
  const float bc2_sqrt = std::sqrt(bias_correction2);
  const float w1 = 1.0f - beta1, w2 = 1.0f - beta2;
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i];
    float pi = p[i] * decay;
    float mi = m[i] + w1 * (gi - m[i]);
    float vi = v[i] * beta2 + w2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pi - step_size * (mi / denom);
  }
}

}  // namespace moe
