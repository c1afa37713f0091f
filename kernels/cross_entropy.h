// Cross-entropy over the vocabulary for rows of logits.  logits: [T, V]; targets, loss: [T].
#pragma once
#include <cstdint>
#include <functional>

#include "kernels/cuda_stream.h"

namespace moe {

// The pieces, for logits split over the vocabulary (each rank holds V columns; the caller reduces
// row_max with a max and sum_exp / target_logit with a sum over the shards between the calls).
// targets here are shard-local ids: -1 when the target is in another shard.
void cross_entropy_row_max(const float* logits, int64_t T, int64_t V, float* row_max);
void cross_entropy_sum_exp(const float* logits, const float* row_max, int64_t T, int64_t V, float* sum_exp);
void cross_entropy_target_logit(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* out);
// dlogits = (exp(logits - row_max) / sum_exp - onehot(targets)) * grad_scale; may alias logits.
void cross_entropy_backward(const float* logits, const int32_t* targets, const float* row_max, const float* sum_exp,
                            int64_t T, int64_t V, float grad_scale, float* dlogits);
// A sum of exponentials taken relative to from_max, made relative to to_max (>= from_max):
// sum_exp[t] *= exp(from_max[t] - to_max[t]). For shards that each folded their own row max.
void cross_entropy_rescale_sum_exp(const float* from_max, const float* to_max, int64_t T, float* sum_exp);

// One shard holding the whole vocabulary: loss[t] = logsumexp(logits[t]) - logits[t, targets[t]];
// when dlogits is non-null it receives (softmax - onehot) * grad_scale (may alias logits).
void cross_entropy_forward_backward(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* loss,
                                    float* dlogits, float grad_scale);

// ---- CUDA twin (kernels/cuda/cross_entropy.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void cross_entropy_row_max(const float* logits, int64_t T, int64_t V, float* row_max, Stream stream = nullptr);
void cross_entropy_sum_exp(const float* logits, const float* row_max, int64_t T, int64_t V, float* sum_exp,
                           Stream stream = nullptr);
void cross_entropy_target_logit(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* out,
                                Stream stream = nullptr);
void cross_entropy_backward(const float* logits, const int32_t* targets, const float* row_max, const float* sum_exp,
                            int64_t T, int64_t V, float grad_scale, float* dlogits, Stream stream = nullptr);
void cross_entropy_rescale_sum_exp(const float* from_max, const float* to_max, int64_t T, float* sum_exp,
                                   Stream stream = nullptr);
// loss[t] = row_max[t] + log(sum_exp[t]) - target_logit[t]
void cross_entropy_loss(const float* row_max, const float* sum_exp, const float* target_logit, int64_t T, float* loss,
                        Stream stream = nullptr);
// The LM head fused with the cross-entropy, chunk by chunk over the vocabulary, so the [T, V]
// logits never exist: h [T, D], W [V, D] (device). Pass 1 computes each chunk's logits [T, chunk]
// with cuBLAS and folds them into running row max / sum of exponentials / target logit; pass 2
// recomputes each chunk, turns it into (softmax - onehot) * grad_scale, and accumulates
// dh [T, D] (assigned) and dW [V, D] (accumulated). loss [T] per token. scratch: T * chunk floats.
// With chunk >= V (one chunk) pass 2 takes the logits pass 1 left in scratch: three GEMMs instead
// of four, for T * V floats of scratch.
//
// Vocabulary split over tensor-parallel ranks: W is this rank's V rows, targets are shard-local ids
// (-1 for a target in another shard), and reduce_stats, called between the passes with this
// shard's row max, sum of exponentials (relative to that max) and target logit (0 when the target
// is elsewhere), device [T] each, must leave in them those of the whole vocabulary (a max and two
// sums over the ranks, cross_entropy_rescale_sum_exp between them). dh is then this shard's part.
using LmHeadStatsReduce = std::function<void(float* row_max, float* sum_exp, float* target_logit)>;
void lm_head_cross_entropy(const float* h, const float* W, const int32_t* targets, int64_t T, int64_t D, int64_t V,
                           int64_t chunk, float grad_scale, float* loss, float* dh, float* dW, float* scratch,
                           const LmHeadStatsReduce& reduce_stats = {}, Stream stream = nullptr);
// The same with bf16 matmul operands (bf16 training): h [T, D] and W [V, D] are bf16 copies, each
// chunk's logit gradients are rounded to bf16 in scratch_bf16 (T * chunk) for the two gradient
// matmuls; accumulation, softmax, loss, dh and dW stay fp32.
void lm_head_cross_entropy_bf16(const void* h, const void* W, const int32_t* targets, int64_t T, int64_t D, int64_t V,
                                int64_t chunk, float grad_scale, float* loss, float* dh, float* dW, float* scratch,
                                void* scratch_bf16, const LmHeadStatsReduce& reduce_stats = {},
                                Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
