// LM head fused with cross-entropy, in token chunks so the [T, V] logits never exist at once
// (llm.c's fused classifier): logits = x W^T, loss per token, and in training the gradients
// dW += dlogits^T x and dx = dlogits W in the same pass.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "model/params.h"

namespace moe {

class LmHead {
 public:
  // weight: the lm_head parameter, or the embedding when tied.
  LmHead(Param& weight, int64_t V, int64_t D) : weight_(weight), V_(V), D_(D) {}
  // Returns the sum over tokens of the cross-entropy. When dx is non-null, writes dx [T, D] and
  // accumulates the weight gradient for the loss `grad_scale * sum_t ce_t`.
  double forward_backward(const float* x, const int32_t* targets, int64_t T, float* dx, float grad_scale);

 private:
  Param& weight_;
  int64_t V_, D_;
  Tensor logits_, loss_;
};

}  // namespace moe
