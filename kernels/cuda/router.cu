// MoE router on the GPU (twin of kernels/cpu/router.cpp): one thread per token (E is at most a few
// hundred), fp32 always.
#include "kernels/cuda/cuda_check.h"
#include "kernels/router.h"

namespace moe::cuda {
namespace {

__global__ void router_fwd(const float* logits, const float* bias, int64_t T, int64_t E, int64_t k, bool sigmoid,
                           bool norm_topk, float* scores, float* probs, float* lse, int32_t* idx, float* weights) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= T) return;
  const float* l = logits + t * E;
  float *s = scores + t * E, *p = probs + t * E;
  float mx = l[0];
  for (int64_t e = 1; e < E; ++e) mx = fmaxf(mx, l[e]);
  float sum = 0;
  for (int64_t e = 0; e < E; ++e) sum += expf(l[e] - mx);
  lse[t] = mx + logf(sum);
  float ssum = 0;
  for (int64_t e = 0; e < E; ++e) {
    s[e] = sigmoid ? 1.0f / (1.0f + expf(-l[e])) : expf(l[e] - mx) / sum;
    ssum += s[e];
  }
  for (int64_t e = 0; e < E; ++e) p[e] = sigmoid ? s[e] / ssum : s[e];
  // top-k by score + bias, ties to the lower index: k passes of a selection
  float wsum = 0;
  for (int64_t j = 0; j < k; ++j) {
    int32_t best = -1;
    float best_v = 0;
    for (int64_t e = 0; e < E; ++e) {
      bool taken = false;
      for (int64_t q = 0; q < j; ++q) taken |= idx[t * k + q] == int32_t(e);
      if (taken) continue;
      const float v = s[e] + (bias ? bias[e] : 0.0f);
      if (best < 0 || v > best_v) best = int32_t(e), best_v = v;
    }
    idx[t * k + j] = best;
    weights[t * k + j] = s[best];
    wsum += s[best];
  }
  if (norm_topk && k > 1)
    for (int64_t j = 0; j < k; ++j) weights[t * k + j] /= wsum;
}

__global__ void router_bwd(const float* logits, const float* scores, const float* probs, const float* lse,
                           const int32_t* idx, const float* dweights, const float* dprobs, const float* dlse,
                           int64_t T, int64_t E, int64_t k, bool sigmoid, bool norm_topk, float* dlogits) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= T) return;
  const float *s = scores + t * E, *p = probs + t * E, *l = logits + t * E;
  float* dl = dlogits + t * E;
  for (int64_t e = 0; e < E; ++e) dl[e] = 0;  // used as dscores first
  // dweights -> dscores of the chosen experts (through the normalisation when norm_topk)
  float wsum = 0, dot = 0;
  for (int64_t j = 0; j < k; ++j) wsum += s[idx[t * k + j]];
  for (int64_t j = 0; j < k; ++j) dot += dweights[t * k + j] * s[idx[t * k + j]];
  for (int64_t j = 0; j < k; ++j) {
    const int32_t e = idx[t * k + j];
    dl[e] += (norm_topk && k > 1) ? (dweights[t * k + j] - dot / wsum) / wsum : dweights[t * k + j];
  }
  // dprobs -> dscores (sigmoid: probs = s / sum s)
  if (dprobs) {
    const float* dp = dprobs + t * E;
    if (sigmoid) {
      float ssum = 0, pd = 0;
      for (int64_t e = 0; e < E; ++e) ssum += s[e], pd += dp[e] * p[e];
      for (int64_t e = 0; e < E; ++e) dl[e] += (dp[e] - pd) / ssum;
    } else {
      for (int64_t e = 0; e < E; ++e) dl[e] += dp[e];
    }
  }
  // dscores -> dlogits
  if (sigmoid) {
    for (int64_t e = 0; e < E; ++e) dl[e] *= s[e] * (1.0f - s[e]);
  } else {
    float sd = 0;
    for (int64_t e = 0; e < E; ++e) sd += dl[e] * s[e];
    for (int64_t e = 0; e < E; ++e) dl[e] = s[e] * (dl[e] - sd);
  }
  if (dlse) {
    const float g = dlse[t];
    for (int64_t e = 0; e < E; ++e) dl[e] += g * expf(l[e] - lse[t]);
  }
}

}  // namespace

void router_forward(const float* logits, const float* bias, int64_t T, int64_t E, int64_t k, bool sigmoid,
                    bool norm_topk, float* scores, float* probs, float* lse, int32_t* idx, float* weights,
                    Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(blocks_for(T, 128), 128, 0, stream, router_fwd)
  (logits, bias, T, E, k, sigmoid, norm_topk, scores, probs, lse, idx, weights);
  MOE_CUDA_LAUNCHED();
}

void router_backward(const float* logits, const float* scores, const float* probs, const float* lse,
                     const int32_t* idx, const float* dweights, const float* dprobs, const float* dlse, int64_t T,
                     int64_t E, int64_t k, bool sigmoid, bool norm_topk, float* dlogits, Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(blocks_for(T, 128), 128, 0, stream, router_bwd)
  (logits, scores, probs, lse, idx, dweights, dprobs, dlse, T, E, k, sigmoid, norm_topk, dlogits);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
