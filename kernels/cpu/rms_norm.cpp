// RMSNorm on the CPU. The weight gradient is summed in fixed token blocks, then the blocks in order,
// so results do not depend on the number of threads.
#include "kernels/rms_norm.h"

#include <cmath>
#include <vector>

namespace moe {

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t T, int64_t D, float eps) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * D;
    float ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    float r = 1.0f / std::sqrt(ss / D + eps);
    rstd[t] = r;
    float* yr = y + t * D;
    for (int64_t i = 0; i < D; ++i) yr[i] = xr[i] * r * w[i];
  }
}

void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t T, int64_t D) {
  constexpr int64_t kBlock = 64;
  int64_t blocks = (T + kBlock - 1) / kBlock;
  std::vector<float> partial(blocks * D, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float* pw = partial.data() + b * D;
    int64_t t1 = (b + 1) * kBlock < T ? (b + 1) * kBlock : T;
    for (int64_t t = b * kBlock; t < t1; ++t) {
      const float* xr = x + t * D;
      const float* dyr = dy + t * D;
      float r = rstd[t];
      float dot = 0;  // sum_i dy_i w_i x_i
      for (int64_t i = 0; i < D; ++i) dot += dyr[i] * w[i] * xr[i];
      float c = dot * r * r / D;
      float* dxr = dx + t * D;
      for (int64_t i = 0; i < D; ++i) {
        dxr[i] = r * (dyr[i] * w[i] - xr[i] * c);
        pw[i] += dyr[i] * xr[i] * r;
      }
    }
  }
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t i = 0; i < D; ++i) dw[i] += partial[b * D + i];
}

}  // namespace moe
