// MoE layer: forward and backward of the gate, order, grouped experts, unorder and shared experts.
#include "model/moe_layer.h"

#include <cmath>

#include "core/error.h"
#include "core/profiler.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/moe_order.h"
#include "kernels/router.h"

namespace moe {

MoeGroups::MoeGroups(Communicator* one_rank) : tokens(one_rank), ep(one_rank) {
  MOE_CHECK(one_rank->size() == 1, "MoeGroups from one communicator needs a one-rank group, got "
                                       << one_rank->size() << " ranks");
}

MoeLayer::MoeLayer(ParamStore& store, const std::string& prefix, const ModelConfig& cfg, int num_layers_for_init,
                   MoeGroups groups)
    : cfg_(cfg.moe),
      D_(cfg.d_model),
      E_(cfg.moe.num_experts),
      K_(cfg.moe.top_k),
      Fe_(cfg.moe.expert_hidden),
      groups_(groups),
      router_(store.add(prefix + "/router/weight", {E_, D_}, Init::Normal, cfg.init_std)),
      experts_(store, prefix + "/experts", E_, E_ / groups.ep->size(), (E_ / groups.ep->size()) * groups.ep->rank(),
               D_, Fe_, cfg.init_std, cfg.init_std / std::sqrt(2.0 * num_layers_for_init)),
      step_counts_(E_, 0) {
  if (groups.ep->size() > 1) dispatcher_ = std::make_unique<TokenDispatcher>(groups.ep, E_, D_);
  if (cfg_.router.bias_update_rate > 0) bias_ = &store.add_buffer(prefix + "/router/expert_bias", {E_}).value;
  if (cfg_.num_shared_experts > 0) {
    int64_t Fs = int64_t(cfg_.num_shared_experts) * cfg_.shared_expert_hidden;
    shared_ = std::make_unique<SwiGluLayer>(store, prefix + "/shared", D_, Fs, cfg.init_std,
                                            cfg.init_std / std::sqrt(2.0 * num_layers_for_init),
                                            "shared_experts_fwd", "shared_experts_bwd");
  }
}

MoeAux MoeLayer::forward(const float* a, float* y, int64_t B, int64_t S, bool training, float grad_scale) {
  const int64_t T = B * S;
  a_ = a;
  T_ = T;
  MoeAux aux;
  {
    ScopedPhase phase("router_fwd");
    logits_.resize({T, E_});
    scores_.resize({T, E_});
    probs_.resize({T, E_});
    lse_.resize({T});
    weights_.resize({T, K_});
    idx_.resize(T * K_);
    gemm(false, true, T, E_, D_, 1.0f, a, D_, router_.value.data(), D_, 0.0f, logits_.data(), E_);
    router_forward(logits_.data(), bias_ ? bias_->data() : nullptr, T, E_, K_, cfg_.score == "sigmoid",
                   cfg_.norm_topk, scores_.data(), probs_.data(), lse_.data(), idx_.data(), weights_.data());
    counts_.assign(E_, 0);
    for (int64_t i = 0; i < T * K_; ++i) counts_[idx_[i]]++;
    if (training) balancing_losses(B, S, grad_scale, aux);
  }
  {
    ScopedPhase phase("experts_fwd");
    int64_t capacity = -1;
    if (cfg_.capacity_factor > 0)
      capacity = int64_t(std::ceil(cfg_.capacity_factor * double(K_) * double(T) / double(E_)));
    slot_.resize(T * K_);
    offsets_.resize(E_ + 1);
    row_token_.resize(T * K_);
    std::vector<int64_t> counts(E_);
    rows_ = moe_order(idx_.data(), T, K_, E_, capacity, counts.data(), offsets_.data(), slot_.data(),
                      row_token_.data());
    xs_.resize({rows_, D_});
    ye_.resize({rows_, D_});
    moe_gather(a, row_token_.data(), rows_, D_, xs_.data());
    if (dispatcher_) {
      dispatcher_->plan(offsets_.data());
      xl_.resize({dispatcher_->local_rows(), D_});
      yl_.resize({dispatcher_->local_rows(), D_});
      dispatcher_->dispatch(xs_.data(), xl_.data());
      experts_.forward(xl_.data(), dispatcher_->local_offsets(), dispatcher_->num_local_groups(), yl_.data());
      dispatcher_->combine(yl_.data(), ye_.data());
    } else {
      experts_.forward(xs_.data(), offsets_.data(), E_, ye_.data());
    }
    moe_unorder_forward(ye_.data(), slot_.data(), weights_.data(), T, K_, D_, y);
  }
  if (shared_) {
    shared_out_.resize({T, D_});
    shared_->forward(a, shared_out_.data(), T);
    add_inplace(y, shared_out_.data(), T * D_);
  }
  return aux;
}

// Fills dprobs_ (load-balancing loss) and dlse_ (z-loss) with their gradients times grad_scale.
void MoeLayer::balancing_losses(int64_t B, int64_t S, float grad_scale, MoeAux& aux) {
  const int64_t T = B * S;
  std::vector<int64_t> global_counts(counts_);
  int64_t global_tokens = T * groups_.tokens->size();
  groups_.tokens->all_reduce_sum(global_counts.data(), E_);
  for (int64_t e = 0; e < E_; ++e) step_counts_[e] += global_counts[e];
  step_tokens_ += global_tokens;

  has_dprobs_ = cfg_.aux_loss_coef > 0;
  if (has_dprobs_) {
    dprobs_.resize({T, E_});
    const double coef = cfg_.aux_loss_coef * double(E_);
    // Sequences of the scope: one group of all T tokens (micro, global) or one per sequence (seq).
    const bool per_seq = cfg_.lbl_scope == "seq";
    const int64_t groups = per_seq ? B : 1, group_len = per_seq ? S : T;
    double lbl = 0;
    for (int64_t gi = 0; gi < groups; ++gi) {
      const int64_t t0 = gi * group_len;
      std::vector<double> f(E_), p(E_, 0.0);
      if (per_seq) {
        std::vector<int64_t> c(E_, 0);
        for (int64_t i = t0 * K_; i < (t0 + group_len) * K_; ++i) c[idx_[i]]++;
        for (int64_t e = 0; e < E_; ++e) f[e] = double(c[e]) / double(K_ * group_len);
      } else if (cfg_.lbl_scope == "global") {
        for (int64_t e = 0; e < E_; ++e) f[e] = double(step_counts_[e]) / double(K_ * step_tokens_);
      } else {
        for (int64_t e = 0; e < E_; ++e) f[e] = double(counts_[e]) / double(K_ * T);
      }
      for (int64_t t = t0; t < t0 + group_len; ++t)
        for (int64_t e = 0; e < E_; ++e) p[e] += probs_.data()[t * E_ + e];
      double group_loss = 0;
      for (int64_t e = 0; e < E_; ++e) group_loss += f[e] * p[e] / double(group_len);
      lbl += coef * group_loss / double(groups);
      // d lbl / d probs[t, e] = coef * f_e / group_len / groups
      for (int64_t t = t0; t < t0 + group_len; ++t)
        for (int64_t e = 0; e < E_; ++e)
          dprobs_.data()[t * E_ + e] = float(coef * f[e] / double(group_len) / double(groups) * grad_scale);
    }
    aux.lbl = lbl;
  }
  has_dlse_ = cfg_.z_loss_coef > 0;
  if (has_dlse_) {
    dlse_.resize({T});
    double z = 0;
    for (int64_t t = 0; t < T; ++t) {
      double l = lse_.data()[t];
      z += l * l;
      dlse_.data()[t] = float(cfg_.z_loss_coef * 2.0 * l / double(T) * grad_scale);
    }
    aux.z = cfg_.z_loss_coef * z / double(T);
  }
}

void MoeLayer::backward(const float* dy, float* da) {
  const int64_t T = T_;
  {
    ScopedPhase phase("experts_bwd");
    dweights_.resize({T, K_});
    // Unorder: dye (in place of ye) and routing-weight gradients.
    moe_unorder_backward(dy, ye_.data(), slot_.data(), weights_.data(), T, K_, D_, ye_.data(), dweights_.data());
    // Expert backward: dye (in ye_) -> dxs (in place of xs_), through the dispatcher when ep > 1
    // (the backward of combine is dispatch and vice versa).
    if (dispatcher_) {
      dispatcher_->dispatch(ye_.data(), yl_.data());
      experts_.backward(yl_.data(), xl_.data());
      dispatcher_->combine(xl_.data(), xs_.data());
    } else {
      experts_.backward(ye_.data(), xs_.data());
    }
    moe_gather_backward(xs_.data(), slot_.data(), T, K_, D_, da);
  }
  {
    ScopedPhase phase("router_bwd");
    dlogits_.resize({T, E_});
    router_backward(logits_.data(), scores_.data(), probs_.data(), lse_.data(), idx_.data(), dweights_.data(),
                    has_dprobs_ ? dprobs_.data() : nullptr, has_dlse_ ? dlse_.data() : nullptr, T, E_, K_,
                    cfg_.score == "sigmoid", cfg_.norm_topk, dlogits_.data());
    gemm(true, false, E_, D_, T, 1.0f, dlogits_.data(), E_, a_, D_, 1.0f, router_.grad.data(), D_);
    gemm(false, false, T, D_, E_, 1.0f, dlogits_.data(), E_, router_.value.data(), D_, 1.0f, da, D_);
  }
  if (shared_) shared_->backward(dy, da, /*accumulate=*/true);
}

void MoeLayer::end_step() {
  if (bias_) {
    double mean = 0;
    for (auto c : step_counts_) mean += double(c);
    mean /= double(E_);
    float* b = bias_->data();
    for (int64_t e = 0; e < E_; ++e) {
      double diff = mean - double(step_counts_[e]);
      float sign = diff > 0 ? 1.0f : (diff < 0 ? -1.0f : 0.0f);
      b[e] += float(cfg_.router.bias_update_rate) * sign;
    }
  }
  std::fill(step_counts_.begin(), step_counts_.end(), 0);
  step_tokens_ = 0;
}

}  // namespace moe
