// MoE feed-forward layer as stages: Gate (router) -> Order -> [Dispatch] -> Expert (grouped SwiGLU)
// -> [Combine] -> Unorder, plus the always-active shared experts. Computes the load-balancing loss
// (lbl_scope micro, global, seq) and z-loss of SPEC section 1, and owns the expert bias of
// aux-loss-free balancing.
// Parallel forms: under tensor parallelism each rank of the tp group routes its own contiguous slice
// of the replica's T tokens (outputs and input gradients are all-gathered over the group; balancing
// statistics are reduced over it so they are those of the whole micro-batch, and capacity is first
// come first served across the slices in token order). Under expert parallelism (ep > 1) Dispatch /
// Combine (TokenDispatcher) move the ordered rows to the ranks holding their experts and back.
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

// C = ceil(cf k T / E) copies per expert for a micro-batch of T tokens, first come first served in
// token order (empty: capacity_factor 0, dropless). Under tp each rank routes a slice of the tokens
// and the slices of lower tp ranks come first, so this rank keeps C minus what they kept:
// slice_counts (this rank's copies per expert before dropping) are gathered over tp. The CPU and
// GPU MoE layers both call it.
std::vector<int64_t> slice_capacities(const MoeConfig& cfg, int64_t T, const std::vector<int64_t>& slice_counts,
                                      Communicator* tp);

// The groups the model talks to. tokens: every rank holding distinct tokens in MoE layers (the
// world), over which lbl_scope=global counts and expert loads are summed. ep: the expert-parallel
// group. tp: the tensor-parallel group. On one rank all are size 1.
struct MoeGroups {
  Communicator* tokens = nullptr;
  Communicator* ep = nullptr;
  Communicator* tp = nullptr;
  MoeGroups(Communicator* tokens_group, Communicator* ep_group, Communicator* tp_group)
      : tokens(tokens_group), ep(ep_group), tp(tp_group) {}
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
  // a: [B*S, D] (the replica's micro-batch, kept until backward); y: [B*S, D] assigned. In training
  // mode the aux losses (of the whole micro-batch) and their gradients (times grad_scale) are
  // computed and the step's loads accumulated.
  MoeAux forward(const float* a, float* y, int64_t B, int64_t S, bool training, float grad_scale);
  // dy: [B*S, D]; da: [B*S, D] assigned; parameter gradients accumulated.
  void backward(const float* dy, float* da);
  // After each optimizer step: expert-bias update from the step's global loads, then reset them.
  void end_step();
  // Tokens routed to each expert (before capacity dropping) in the current step, over all ranks.
  const std::vector<int64_t>& step_load() const { return step_counts_; }

 private:
  std::vector<int64_t> capacities(int64_t T);  // per expert, for this rank's slice; empty: dropless
  void balancing_losses(int64_t B, int64_t S, float grad_scale, MoeAux& aux);

  const MoeConfig cfg_;
  int64_t D_, E_, K_;
  MoeGroups groups_;
  Param& router_;           // [E, D], replicated
  GroupedExperts experts_;  // this rank's E / ep experts
  std::unique_ptr<TokenDispatcher> dispatcher_;  // when ep > 1
  Tensor* bias_ = nullptr;  // [E] expert bias, when bias balancing is on
  std::unique_ptr<SwiGluLayer> shared_;

  // saved by forward (for this rank's slice of Ts tokens starting at token t0_)
  const float* a_ = nullptr;
  int64_t T_ = 0, Ts_ = 0, t0_ = 0, rows_ = 0;
  Tensor logits_, scores_, probs_, lse_, weights_;  // [Ts, E] x3, [Ts], [Ts, k]
  std::vector<int32_t> idx_, row_token_;            // [Ts, k], [rows]
  std::vector<int64_t> slot_, offsets_, counts_;    // [Ts, k], [E + 1], [E]
  Tensor xs_, ye_;                                  // [rows, D] in expert order (this rank's tokens)
  Tensor xl_, yl_;                                  // [local rows, D] after dispatch (ep > 1)
  Tensor dprobs_, dlse_, dweights_, dlogits_, shared_out_, slice_out_;
  bool has_dprobs_ = false, has_dlse_ = false;

  // accumulated over the micro-batches of the current optimizer step (global over all ranks)
  std::vector<int64_t> step_counts_;
  int64_t step_tokens_ = 0;
};

}  // namespace moe
