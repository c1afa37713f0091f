// LM head fused with cross-entropy, in token chunks so the [T, V] logits never exist at once
// (llm.c's fused classifier): logits = x W^T, loss per token, and in training the gradients
// dW += dlogits^T x and dx = dlogits W in the same pass. Vocabulary-parallel over the tp group
// (Megatron): each rank holds V / tp rows of W; the softmax statistics (row max, sum of exp, the
// target's logit) are reduced over the group, so full logits are never gathered.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

class LmHead {
 public:
  // weight: the lm_head parameter, or the embedding when tied (this rank's vocabulary rows).
  LmHead(Param& weight, int64_t D, Communicator* tp) : weight_(weight), D_(D), tp_(tp) {}
  // Returns the sum over tokens of the cross-entropy (the same on every tp rank). When dx is
  // non-null, writes dx [T, D] and accumulates the weight gradient of `grad_scale * sum_t ce_t`.
  double forward_backward(const float* x, const int32_t* targets, int64_t T, float* dx, float grad_scale);

 private:
  Param& weight_;
  int64_t D_;
  Communicator* tp_;
  Tensor logits_;
  std::vector<float> row_max_, sum_exp_, target_logit_;
  std::vector<int32_t> local_targets_;
};

}  // namespace moe
