// Cross-entropy over the vocabulary for rows of logits.  logits: [T, V]; targets, loss: [T].
#pragma once
#include <cstdint>

namespace moe {

// loss[t] = logsumexp(logits[t]) - logits[t, targets[t]]. When dlogits is non-null it receives
// (softmax(logits[t]) - onehot(targets[t])) * grad_scale; dlogits may alias logits.
void cross_entropy_forward_backward(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* loss,
                                    float* dlogits, float grad_scale);

}  // namespace moe
