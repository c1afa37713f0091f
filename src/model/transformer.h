// Decoder-only transformer of SPEC section 1: embedding, blocks (attention + dense SwiGLU or MoE),
// final RMSNorm and LM head with cross-entropy. Hand-written forward and backward. Under tensor
// parallelism the embedding and LM head are split by vocabulary, attention by heads, dense FFNs by
// columns; the residual stream and the norms are replicated on the tp ranks.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/tensor.h"
#include "model/attention_layer.h"
#include "model/lm_head.h"
#include "model/moe_layer.h"
#include "model/params.h"
#include "model/rms_norm_layer.h"
#include "model/swiglu_layer.h"
#include "parallel/communicator.h"

namespace moe {

struct MicroBatchLoss {
  double ce = 0.0;   // mean cross-entropy over the micro-batch's tokens
  double aux = 0.0;  // sum over MoE layers of load-balancing + z losses
};

class TransformerBlock {
 public:
  TransformerBlock(ParamStore& store, int layer, const ModelConfig& cfg, MoeGroups groups);
  // x: [T, D] block input (kept until backward); out: [T, D]. Returns the block's aux losses.
  MoeAux forward(const float* x, float* out, int64_t B, int64_t S, bool training, float grad_scale);
  // dout: [T, D] -> dx: [T, D] (assigned; may alias dout).
  void backward(float* dout, float* dx);
  MoeLayer* moe() { return moe_.get(); }

 private:
  int64_t D_;
  RmsNormLayer attn_norm_, ffn_norm_;
  AttentionLayer attn_;
  std::unique_ptr<SwiGluLayer> dense_;
  std::unique_ptr<MoeLayer> moe_;
  int64_t T_ = 0;
  Tensor a1_, mid_, a2_, tmp_, dtmp_;  // [T, D] each
};

class Transformer {
 public:
  Transformer(const ModelConfig& cfg, MoeGroups groups);
  ParamStore& params() { return store_; }
  const ModelConfig& config() const { return cfg_; }

  // One micro-batch: tokens, targets [B*S]. With training, accumulates the gradient of
  // grad_scale * (ce + aux) into every parameter. Without, forward only.
  MicroBatchLoss forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S,
                                  bool training, float grad_scale);
  // After the optimizer step: expert-bias updates, per-step statistics reset.
  void end_step();
  // Called with the layer index right after that layer's backward (for bucketed gradient sync);
  // an empty function turns it off.
  void set_layer_backward_hook(std::function<void(int)> hook) { layer_backward_hook_ = std::move(hook); }
  // Per MoE layer (index into layers): tokens per expert this step (global over dp).
  std::vector<std::pair<int, std::vector<int64_t>>> expert_loads() const;

  // Matmul parameters touched per token (active experts only), for MFU: 6 * this * tokens.
  double active_matmul_params() const;

 private:
  ModelConfig cfg_;
  ParamStore store_;
  Param* embed_ = nullptr;
  std::vector<std::unique_ptr<TransformerBlock>> blocks_;
  std::unique_ptr<RmsNormLayer> final_norm_;
  Param* lm_weight_ = nullptr;
  std::unique_ptr<LmHead> lm_head_;
  Communicator* tp_ = nullptr;
  std::vector<int32_t> local_ids_;  // token ids within this rank's vocabulary shard, -1 outside
  std::vector<Tensor> acts_;  // residual stream: input of block l, l = 0..L
  Tensor hf_, dh_, dtmp_;
  std::function<void(int)> layer_backward_hook_;
};

}  // namespace moe
