// Cross-entropy on the CPU, one row per iteration.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moe {

void cross_entropy_row_max(const float* logits, int64_t T, int64_t V, float* row_max) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) row_max[t] = *std::max_element(logits + t * V, logits + (t + 1) * V);
}

void cross_entropy_sum_exp(const float* logits, const float* row_max, int64_t T, int64_t V, float* sum_exp) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * V;
    float s = 0;
    for (int64_t i = 0; i < V; ++i) s += std::exp(l[i] - row_max[t]);
    sum_exp[t] = s;
  }
}

void cross_entropy_rescale_sum_exp(const float* from_max, const float* to_max, int64_t T, float* sum_exp) {
  for (int64_t t = 0; t < T; ++t) sum_exp[t] *= std::exp(from_max[t] - to_max[t]);
}

void cross_entropy_target_logit(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* out) {
  for (int64_t t = 0; t < T; ++t) out[t] = targets[t] >= 0 ? logits[t * V + targets[t]] : 0.0f;
}

void cross_entropy_backward(const float* logits, const int32_t* targets, const float* row_max, const float* sum_exp,
                            int64_t T, int64_t V, float grad_scale, float* dlogits) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * V;
    float* d = dlogits + t * V;
    const float inv = grad_scale / sum_exp[t];
    for (int64_t i = 0; i < V; ++i) d[i] = std::exp(l[i] - row_max[t]) * inv;
    if (targets[t] >= 0) d[targets[t]] -= grad_scale;
  }
}

void cross_entropy_forward_backward(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* loss,
                                    float* dlogits, float grad_scale) {
  std::vector<float> mx(T), se(T), tl(T);
  cross_entropy_row_max(logits, T, V, mx.data());
  cross_entropy_sum_exp(logits, mx.data(), T, V, se.data());
  cross_entropy_target_logit(logits, targets, T, V, tl.data());
  for (int64_t t = 0; t < T; ++t) loss[t] = std::log(se[t]) + mx[t] - tl[t];
  if (dlogits) cross_entropy_backward(logits, targets, mx.data(), se.data(), T, V, grad_scale, dlogits);
}

}  // namespace moe
