// MoE feed-forward layer as stages: Gate (router) -> Order -> Expert (grouped SwiGLU) -> Unorder,
// plus the always-active shared experts. Computes the load-balancing loss (lbl_scope micro, global,
// seq) and z-loss of SPEC section 1, and owns the expert bias of aux-loss-free balancing.
// Under expert parallelism (ep > 1) Dispatch / Combine (TokenDispatcher) move the ordered rows to
// the ranks holding their experts and back; with ep = 1 they are skipped.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/tensor.h"
#include "model/grouped_experts.h"
#include "model/params.h"
#include "model/swiglu_layer.h"
#include "parallel/communicator.h"
#include "parallel/token_dispatcher.h"

namespace moe {

// The groups an MoE layer talks to. tokens: every rank holding distinct tokens (the data-parallel
// group of the MoE layers), over which lbl_scope=global counts and expert loads are summed.
// ep: the expert-parallel group, over which the experts are split. On one rank both are size 1.
struct MoeGroups {
  Communicator* tokens = nullptr;
  Communicator* ep = nullptr;
  MoeGroups(Communicator* tokens_group, Communicator* ep_group) : tokens(tokens_group), ep(ep_group) {}
  MoeGroups(Communicator* one_rank);  // NOLINT: implicit for single-rank use; checks size() == 1
};

struct MoeAux {
  double lbl = 0.0;  // load-balancing loss of this micro-batch (coefficient included)
  double z = 0.0;    // router z-loss (coefficient included)
};

class MoeLayer {
 public:
  MoeLayer(ParamStore& store, const std::string& prefix, const ModelConfig& cfg, int num_layers_for_init,
           MoeGroups groups);
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
  MoeGroups groups_;
  Param& router_;           // [E, D]
  GroupedExperts experts_;  // this rank's E / ep experts
  std::unique_ptr<TokenDispatcher> dispatcher_;  // when ep > 1
  Tensor* bias_ = nullptr;  // [E] expert bias, when bias balancing is on
  std::unique_ptr<SwiGluLayer> shared_;

  // saved by forward
  const float* a_ = nullptr;
  int64_t T_ = 0, rows_ = 0;
  Tensor logits_, scores_, probs_, lse_, weights_;  // [T, E] x3, [T], [T, k]
  std::vector<int32_t> idx_, row_token_;            // [T, k], [rows]
  std::vector<int64_t> slot_, offsets_, counts_;    // [T, k], [E + 1], [E]
  Tensor xs_, ye_;                                  // [rows, D] in expert order (this rank's tokens)
  Tensor xl_, yl_;                                  // [local rows, D] after dispatch (ep > 1)
  Tensor dprobs_, dlse_, dweights_, dlogits_, shared_out_;
  bool has_dprobs_ = false, has_dlse_ = false;

  // accumulated over the micro-batches of the current optimizer step (global over dp)
  std::vector<int64_t> step_counts_;
  int64_t step_tokens_ = 0;
};

}  // namespace moe
