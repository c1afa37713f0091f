// Cross-entropy over the vocabulary for rows of logits.  logits: [T, V]; targets, loss: [T].
#pragma once
#include <cstdint>

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

// One shard holding the whole vocabulary: loss[t] = logsumexp(logits[t]) - logits[t, targets[t]];
// when dlogits is non-null it receives (softmax - onehot) * grad_scale (may alias logits).
void cross_entropy_forward_backward(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* loss,
                                    float* dlogits, float grad_scale);

}  // namespace moe
