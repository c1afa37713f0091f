// Cross-entropy on the CPU, one row per iteration, with the gradient written in the same pass.
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>

namespace moe {

void cross_entropy_forward_backward(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* loss,
                                    float* dlogits, float grad_scale) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * V;
    float mx = *std::max_element(l, l + V);
    float sum = 0;
    for (int64_t i = 0; i < V; ++i) sum += std::exp(l[i] - mx);
    float lse = mx + std::log(sum);
    float target_logit = l[targets[t]];
    loss[t] = lse - target_logit;
    if (dlogits) {
      float* d = dlogits + t * V;
      for (int64_t i = 0; i < V; ++i) d[i] = std::exp(l[i] - lse) * grad_scale;
      d[targets[t]] -= grad_scale;
    }
  }
}

}  // namespace moe
