// MoE router (gate): scores, top-k selection and routing weights, and the backward to the logits.
// logits, scores, probs: [T, E]; lse: [T]; idx, weights: [T, k]. Router math is fp32 always.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

// scores = softmax(logits) or sigmoid(logits); probs = the per-token distribution used by the
// load-balancing loss (softmax: = scores; sigmoid: scores / sum(scores)); lse = logsumexp(logits).
// Top-k by scores + bias (bias may be null; selection only), ties to the lower expert index.
// weights = chosen scores, divided by their sum when norm_topk and k > 1.
void router_forward(const float* logits, const float* bias, int64_t T, int64_t E, int64_t k, bool sigmoid,
                    bool norm_topk, float* scores, float* probs, float* lse, int32_t* idx, float* weights);

// dlogits (assigned) from: dweights [T, k], dprobs [T, E] (may be null), dlse [T] (may be null).
void router_backward(const float* logits, const float* scores, const float* probs, const float* lse,
                     const int32_t* idx, const float* dweights, const float* dprobs, const float* dlse, int64_t T,
                     int64_t E, int64_t k, bool sigmoid, bool norm_topk, float* dlogits);

// ---- CUDA twin (kernels/cuda/router.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void router_forward(const float* logits, const float* bias, int64_t T, int64_t E, int64_t k, bool sigmoid,
                    bool norm_topk, float* scores, float* probs, float* lse, int32_t* idx, float* weights,
                    Stream stream = nullptr);
void router_backward(const float* logits, const float* scores, const float* probs, const float* lse,
                     const int32_t* idx, const float* dweights, const float* dprobs, const float* dlse, int64_t T,
                     int64_t E, int64_t k, bool sigmoid, bool norm_topk, float* dlogits, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
