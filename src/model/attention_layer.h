// Grouped-query causal self-attention with RoPE: projections wq, wk, wv, wo (y = x W^T).
// Tensor parallel (Megatron): each rank of the tp group holds n_heads / tp query heads and
// n_kv_heads / tp kv heads (rows of wq, wk, wv; columns of wo); the partial outputs and input
// gradients are summed over the group.
#pragma once
#include <string>

#include "core/config.h"
#include "core/tensor.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

class AttentionLayer {
 public:
  AttentionLayer(ParamStore& store, const std::string& prefix, const ModelConfig& cfg, int num_layers_for_init,
                 Communicator* tp);
  // a: [B*S, D] (kept until backward), y: [B*S, D] assigned.
  void forward(const float* a, float* y, int64_t B, int64_t S);
  // dy: [B*S, D]; da assigned; weight gradients accumulated.
  void backward(const float* dy, float* da);

 private:
  Communicator* tp_;
  Param &wq_, &wk_, &wv_, &wo_;
  int64_t D_, H_, Hkv_, hd_;  // H_, Hkv_: this rank's heads
  double theta_;
  const float* a_ = nullptr;
  int64_t B_ = 0, S_ = 0;
  Tensor q_, k_, v_, o_, lse_;  // saved activations (q, k after RoPE; lse [B, H, S])
  // Attention probabilities [B, H, S, S] kept for the backward while they take at most this much
  // per layer (short sequences: no recomputation); longer sequences recompute them from lse_.
  static constexpr int64_t kProbsCacheBytes = int64_t(64) << 20;
  Tensor probs_;
  bool probs_cached_ = false;
  Tensor dq_, dk_, dv_, do_;      // work buffers for backward
};

}  // namespace moe
