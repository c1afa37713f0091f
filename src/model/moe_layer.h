// MoE feed-forward layer as stages: Gate (router) -> Order -> Expert (grouped SwiGLU) -> Unorder,
// plus the always-active shared experts. Computes the load-balancing loss (lbl_scope micro, global,
// seq) and z-loss of SPEC section 1, and owns the expert bias of aux-loss-free balancing.
// On one rank Dispatch/Combine are the identity; issue 3 inserts them between Order and Expert.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/tensor.h"
#include "model/params.h"
#include "model/swiglu_layer.h"
#include "parallel/communicator.h"

namespace moe {

struct MoeAux {
  double lbl = 0.0;  // load-balancing loss of this micro-batch (coefficient included)
  double z = 0.0;    // router z-loss (coefficient included)
};

class MoeLayer {
 public:
  // dp_comm: the data-parallel group over which lbl_scope=global and the expert loads are summed.
  MoeLayer(ParamStore& store, const std::string& prefix, const ModelConfig& cfg, int num_layers_for_init,
           Communicator* dp_comm);
  // a: [B*S, D] (kept until backward); y: [B*S, D] assigned. In training mode the aux losses and
  // their gradients (already scaled by grad_scale) are computed and the step's loads accumulated.
  MoeAux forward(const float* a, float* y, int64_t B, int64_t S, bool training, float grad_scale);
  // da assigned; parameter gradients accumulated.
  void backward(const float* dy, float* da);
  // After each optimizer step: expert-bias update from the step's global loads, then reset them.
  void end_step();
  // Tokens routed to each expert (before capacity dropping) in the current step, over all dp ranks.
  const std::vector<int64_t>& step_load() const { return step_counts_; }

 private:
  void balancing_losses(int64_t B, int64_t S, float grad_scale, MoeAux& aux);

  const MoeConfig cfg_;
  int64_t D_, E_, K_, Fe_;
  Communicator* dp_comm_;
  Param& router_;   // [E, D]
  Param& w1_;       // [E, Fe, D]
  Param& w3_;       // [E, Fe, D]
  Param& w2_;       // [E, D, Fe]
  Tensor* bias_ = nullptr;  // [E] expert bias, when bias balancing is on
  std::unique_ptr<SwiGluLayer> shared_;

  // saved by forward
  const float* a_ = nullptr;
  int64_t T_ = 0, rows_ = 0;
  Tensor logits_, scores_, probs_, lse_, weights_;  // [T, E] x3, [T], [T, k]
  std::vector<int32_t> idx_, row_token_;            // [T, k], [rows]
  std::vector<int64_t> slot_, offsets_, counts_;    // [T, k], [E + 1], [E]
  Tensor xs_, g_, u_, h_, ye_;                      // [rows, D], [rows, Fe] x3, [rows, D]
  Tensor dprobs_, dlse_, dweights_, dlogits_, shared_out_;
  bool has_dprobs_ = false, has_dlse_ = false;

  // accumulated over the micro-batches of the current optimizer step (global over dp)
  std::vector<int64_t> step_counts_;
  int64_t step_tokens_ = 0;
};

}  // namespace moe
