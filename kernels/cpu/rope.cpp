// RoPE on the CPU: a cos/sin table per call (S x hd/2), then a rotation of every head vector.
#include "kernels/rope.h"

#include <cmath>
#include <vector>

namespace moe {

static void rope_apply(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, float sign) {
  int64_t half = hd / 2;
  std::vector<float> cs(S * half), sn(S * half);
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < half; ++i) {
      double angle = double(s) * std::pow(theta, -2.0 * double(i) / double(hd));
      cs[s * half + i] = float(std::cos(angle));
      sn[s * half + i] = sign * float(std::sin(angle));
    }
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) {
      const float* c = cs.data() + s * half;
      const float* sv = sn.data() + s * half;
      for (int64_t h = 0; h < nh; ++h) {
        float* v = x + ((b * S + s) * nh + h) * hd;
        for (int64_t i = 0; i < half; ++i) {
          float a = v[i], bb = v[i + half];
          v[i] = a * c[i] - bb * sv[i];
          v[i + half] = bb * c[i] + a * sv[i];
        }
      }
    }
}

void rope_forward(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta) {
  rope_apply(x, B, S, nh, hd, theta, 1.0f);
}

void rope_backward(float* dx, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta) {
  rope_apply(dx, B, S, nh, hd, theta, -1.0f);
}

}  // namespace moe
