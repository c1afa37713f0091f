// Router on the CPU, one token per iteration (E is small: 8 to 256).
#include "kernels/router.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moe {

void router_forward(const float* logits, const float* bias, int64_t T, int64_t E, int64_t k, bool sigmoid,
                    bool norm_topk, float* scores, float* probs, float* lse, int32_t* idx, float* weights) {
#pragma omp parallel
  {
    std::vector<float> sel(E);
    std::vector<int32_t> order(E);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* l = logits + t * E;
      float* s = scores + t * E;
      float* p = probs + t * E;
      float mx = *std::max_element(l, l + E);
      float sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += std::exp(l[e] - mx);
      lse[t] = mx + std::log(sum);
      if (sigmoid) {
        float ssum = 0;
        for (int64_t e = 0; e < E; ++e) {
          s[e] = 1.0f / (1.0f + std::exp(-l[e]));
          ssum += s[e];
        }
        for (int64_t e = 0; e < E; ++e) p[e] = s[e] / ssum;
      } else {
        for (int64_t e = 0; e < E; ++e) s[e] = p[e] = std::exp(l[e] - lse[t]);
      }
      for (int64_t e = 0; e < E; ++e) {
        sel[e] = bias ? s[e] + bias[e] : s[e];
        order[e] = int32_t(e);
      }
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t a, int32_t b) { return sel[a] > sel[b] || (sel[a] == sel[b] && a < b); });
      float wsum = 0;
      for (int64_t j = 0; j < k; ++j) {
        idx[t * k + j] = order[j];
        weights[t * k + j] = s[order[j]];
        wsum += s[order[j]];
      }
      if (norm_topk && k > 1)
        for (int64_t j = 0; j < k; ++j) weights[t * k + j] /= wsum;
    }
  }
}

void router_backward(const float* logits, const float* scores, const float* probs, const float* lse,
                     const int32_t* idx, const float* dweights, const float* dprobs, const float* dlse, int64_t T,
                     int64_t E, int64_t k, bool sigmoid, bool norm_topk, float* dlogits) {
#pragma omp parallel
  {
    std::vector<float> ds(E);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* s = scores + t * E;
      std::fill(ds.begin(), ds.end(), 0.0f);
      // routing weights -> scores
      const int32_t* id = idx + t * k;
      const float* dw = dweights + t * k;
      if (norm_topk && k > 1) {
        float z = 0, dot = 0;
        for (int64_t j = 0; j < k; ++j) z += s[id[j]];
        for (int64_t j = 0; j < k; ++j) dot += dw[j] * (s[id[j]] / z);
        for (int64_t j = 0; j < k; ++j) ds[id[j]] += (dw[j] - dot) / z;
      } else {
        for (int64_t j = 0; j < k; ++j) ds[id[j]] += dw[j];
      }
      // balancing distribution -> scores
      if (dprobs) {
        const float* dp = dprobs + t * E;
        if (sigmoid) {
          const float* p = probs + t * E;
          float ssum = 0, dot = 0;
          for (int64_t e = 0; e < E; ++e) {
            ssum += s[e];
            dot += dp[e] * p[e];
          }
          for (int64_t e = 0; e < E; ++e) ds[e] += (dp[e] - dot) / ssum;
        } else {
          for (int64_t e = 0; e < E; ++e) ds[e] += dp[e];
        }
      }
      // scores -> logits
      float* dl = dlogits + t * E;
      if (sigmoid) {
        for (int64_t e = 0; e < E; ++e) dl[e] = ds[e] * s[e] * (1.0f - s[e]);
      } else {
        float dot = 0;
        for (int64_t e = 0; e < E; ++e) dot += ds[e] * s[e];
        for (int64_t e = 0; e < E; ++e) dl[e] = s[e] * (ds[e] - dot);
      }
      // z-loss: d lse / d logits = softmax(logits)
      if (dlse && dlse[t] != 0.0f) {
        const float* l = logits + t * E;
        for (int64_t e = 0; e < E; ++e) dl[e] += dlse[t] * std::exp(l[e] - lse[t]);
      }
    }
  }
}

}  // namespace moe
