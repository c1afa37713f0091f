// MoE layer: forward and backward of the gate, order, dispatch, grouped experts, combine, unorder
// and shared experts, over this rank's slice of the tokens.
#include "model/moe_layer.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/profiler.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/moe_order.h"
#include "kernels/router.h"

namespace moe {

MoeGroups::MoeGroups(Communicator* one_rank) : tokens(one_rank), ep(one_rank), tp(one_rank) {
  MOE_CHECK(one_rank->size() == 1, "MoeGroups from one communicator needs a one-rank group, got "
                                       << one_rank->size() << " ranks");
}

MoeLayer::MoeLayer(ParamStore& store, const std::string& prefix, const ModelConfig& cfg, int num_layers_for_init,
                   MoeGroups groups)
    : cfg_(cfg.moe),
      D_(cfg.d_model),
      E_(cfg.moe.num_experts),
      K_(cfg.moe.top_k),
      groups_(groups),
      router_(store.add(prefix + "/router/weight", {E_, D_}, Init::Normal, cfg.init_std)),
      experts_(store, prefix + "/experts", E_, E_ / groups.ep->size(), (E_ / groups.ep->size()) * groups.ep->rank(),
               D_, cfg.moe.expert_hidden, cfg.init_std, cfg.init_std / std::sqrt(2.0 * num_layers_for_init)),
      step_counts_(E_, 0) {
  router_.token_sliced = true;
  if (groups.ep->size() > 1) dispatcher_ = std::make_unique<TokenDispatcher>(groups.ep, E_, D_);
  if (cfg_.router.bias_update_rate > 0) bias_ = &store.add_buffer(prefix + "/router/expert_bias", {E_}).value;
  if (cfg_.num_shared_experts > 0) {
    int64_t Fs = int64_t(cfg_.num_shared_experts) * cfg_.shared_expert_hidden;
    shared_ = std::make_unique<SwiGluLayer>(store, prefix + "/shared", D_, Fs, cfg.init_std,
                                            cfg.init_std / std::sqrt(2.0 * num_layers_for_init),
                                            "shared_experts_fwd", "shared_experts_bwd");
    shared_->mark_token_sliced();
  }
}

std::vector<int64_t> slice_capacities(const MoeConfig& cfg, int64_t T, const std::vector<int64_t>& slice_counts,
                                      Communicator* tp) {
  if (cfg.capacity_factor <= 0) return {};
  const int64_t E = cfg.num_experts;
  std::vector<int64_t> cap(size_t(E),
                           int64_t(std::ceil(cfg.capacity_factor * double(cfg.top_k) * double(T) / double(E))));
  if (tp && tp->size() > 1) {
    std::vector<float> all(size_t(E) * tp->size()), mine(slice_counts.begin(), slice_counts.end());
    tp->all_gather(mine.data(), all.data(), E);
    for (int r = 0; r < tp->rank(); ++r)
      for (int64_t e = 0; e < E; ++e)
        cap[size_t(e)] = std::max<int64_t>(0, cap[size_t(e)] - int64_t(all[size_t(r * E + e)]));
  }
  return cap;
}

std::vector<int64_t> MoeLayer::capacities(int64_t T) { return slice_capacities(cfg_, T, counts_, groups_.tp); }

MoeAux MoeLayer::forward(const float* a, float* y, int64_t B, int64_t S, bool training, float grad_scale) {
  const int64_t T = B * S, P = groups_.tp->size();
  T_ = T;
  Ts_ = T / P;
  t0_ = Ts_ * groups_.tp->rank();
  a_ = a + t0_ * D_;
  const int64_t Ts = Ts_;
  MoeAux aux;
  {
    ScopedPhase phase("router_fwd");
    logits_.resize({Ts, E_});
    scores_.resize({Ts, E_});
    probs_.resize({Ts, E_});
    lse_.resize({Ts});
    weights_.resize({Ts, K_});
    idx_.resize(Ts * K_);
    gemm(false, true, Ts, E_, D_, 1.0f, a_, D_, router_.value.data(), D_, 0.0f, logits_.data(), E_);
    router_forward(logits_.data(), bias_ ? bias_->data() : nullptr, Ts, E_, K_, cfg_.score == "sigmoid",
                   cfg_.norm_topk, scores_.data(), probs_.data(), lse_.data(), idx_.data(), weights_.data());
    counts_.assign(E_, 0);
    for (int64_t i = 0; i < Ts * K_; ++i) counts_[idx_[i]]++;
    if (training) balancing_losses(B, S, grad_scale, aux);
  }
  float* ys = P > 1 ? (slice_out_.resize({Ts, D_}), slice_out_.data()) : y;
  {
    ScopedPhase phase("experts_fwd");
    std::vector<int64_t> cap = capacities(T);
    slot_.resize(Ts * K_);
    offsets_.resize(E_ + 1);
    row_token_.resize(Ts * K_);
    std::vector<int64_t> counts(E_);
    rows_ = moe_order(idx_.data(), Ts, K_, E_, cap.empty() ? nullptr : cap.data(), counts.data(), offsets_.data(),
                      slot_.data(), row_token_.data());
    xs_.resize({rows_, D_});
    ye_.resize({rows_, D_});
    moe_gather(a_, row_token_.data(), rows_, D_, xs_.data());
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
    moe_unorder_forward(ye_.data(), slot_.data(), weights_.data(), Ts, K_, D_, ys);
  }
  if (shared_) {
    shared_out_.resize({Ts, D_});
    shared_->forward(a_, shared_out_.data(), Ts);
    add_inplace(ys, shared_out_.data(), Ts * D_);
  }
  if (P > 1) {
    ScopedPhase phase("tp_gather");
    groups_.tp->all_gather(ys, y, Ts * D_);
  }
  return aux;
}

// Fills dprobs_ (load-balancing loss) and dlse_ (z-loss) with their gradients times grad_scale,
// and returns in aux the values for the whole micro-batch (summed over the tp slices).
void MoeLayer::balancing_losses(int64_t B, int64_t S, float grad_scale, MoeAux& aux) {
  const int64_t T = B * S, Ts = Ts_, t0 = t0_;
  Communicator* tp = groups_.tp;
  std::vector<int64_t> global_counts(counts_);
  {
    ScopedPhase comm("moe_stats_sync");
    groups_.tokens->all_reduce_sum(global_counts.data(), E_);
  }
  for (int64_t e = 0; e < E_; ++e) step_counts_[e] += global_counts[e];
  step_tokens_ += Ts * groups_.tokens->size();

  double partial[2] = {0.0, 0.0};  // this slice's share of lbl and z
  has_dprobs_ = cfg_.aux_loss_coef > 0;
  if (has_dprobs_) {
    dprobs_.resize({Ts, E_});
    const double coef = cfg_.aux_loss_coef * double(E_);
    const float* probs = probs_.data();
    if (cfg_.lbl_scope == "seq") {
      // per sequence of the micro-batch: counts over the whole sequence (reduced over tp)
      std::vector<int64_t> c(B * E_, 0);
      for (int64_t i = 0; i < Ts; ++i)
        for (int64_t j = 0; j < K_; ++j) c[((t0 + i) / S) * E_ + idx_[i * K_ + j]]++;
      if (tp->size() > 1) tp->all_reduce_sum(c.data(), B * E_);
      for (int64_t i = 0; i < Ts; ++i) {
        const int64_t b = (t0 + i) / S;
        for (int64_t e = 0; e < E_; ++e) {
          const double f = double(c[b * E_ + e]) / double(K_ * S);
          partial[0] += coef * f * probs[i * E_ + e] / double(S) / double(B);
          dprobs_.data()[i * E_ + e] = float(coef * f / double(S) / double(B) * grad_scale);
        }
      }
    } else {
      std::vector<double> f(E_);
      if (cfg_.lbl_scope == "global") {
        for (int64_t e = 0; e < E_; ++e) f[e] = double(step_counts_[e]) / double(K_ * step_tokens_);
      } else {
        std::vector<int64_t> c(counts_);
        if (tp->size() > 1) tp->all_reduce_sum(c.data(), E_);
        for (int64_t e = 0; e < E_; ++e) f[e] = double(c[e]) / double(K_ * T);
      }
      for (int64_t i = 0; i < Ts; ++i)
        for (int64_t e = 0; e < E_; ++e) {
          partial[0] += coef * f[e] * probs[i * E_ + e] / double(T);
          dprobs_.data()[i * E_ + e] = float(coef * f[e] / double(T) * grad_scale);
        }
    }
  }
  has_dlse_ = cfg_.z_loss_coef > 0;
  if (has_dlse_) {
    dlse_.resize({Ts});
    for (int64_t i = 0; i < Ts; ++i) {
      const double l = lse_.data()[i];
      partial[1] += cfg_.z_loss_coef * l * l / double(T);
      dlse_.data()[i] = float(cfg_.z_loss_coef * 2.0 * l / double(T) * grad_scale);
    }
  }
  if (tp->size() > 1) tp->all_reduce_sum(partial, 2);
  aux.lbl = partial[0];
  aux.z = partial[1];
}

void MoeLayer::backward(const float* dy_full, float* da_full) {
  const int64_t Ts = Ts_, P = groups_.tp->size();
  const float* dy = dy_full + t0_ * D_;
  float* da = P > 1 ? (slice_out_.resize({Ts, D_}), slice_out_.data()) : da_full;
  {
    ScopedPhase phase("experts_bwd");
    dweights_.resize({Ts, K_});
    // Unorder: dye (in place of ye) and routing-weight gradients.
    moe_unorder_backward(dy, ye_.data(), slot_.data(), weights_.data(), Ts, K_, D_, ye_.data(), dweights_.data());
    // Expert backward: dye (in ye_) -> dxs (in place of xs_), through the dispatcher when ep > 1
    // (the backward of combine is dispatch and vice versa).
    if (dispatcher_) {
      dispatcher_->dispatch(ye_.data(), yl_.data());
      experts_.backward(yl_.data(), xl_.data());
      dispatcher_->combine(xl_.data(), xs_.data());
    } else {
      experts_.backward(ye_.data(), xs_.data());
    }
    moe_gather_backward(xs_.data(), slot_.data(), Ts, K_, D_, da);
  }
  {
    ScopedPhase phase("router_bwd");
    dlogits_.resize({Ts, E_});
    router_backward(logits_.data(), scores_.data(), probs_.data(), lse_.data(), idx_.data(), dweights_.data(),
                    has_dprobs_ ? dprobs_.data() : nullptr, has_dlse_ ? dlse_.data() : nullptr, Ts, E_, K_,
                    cfg_.score == "sigmoid", cfg_.norm_topk, dlogits_.data());
    gemm(true, false, E_, D_, Ts, 1.0f, dlogits_.data(), E_, a_, D_, 1.0f, router_.grad.data(), D_);
    gemm(false, false, Ts, D_, E_, 1.0f, dlogits_.data(), E_, router_.value.data(), D_, 1.0f, da, D_);
  }
  if (shared_) shared_->backward(dy, da, /*accumulate=*/true);
  if (P > 1) {
    ScopedPhase phase("tp_gather");
    groups_.tp->all_gather(da, da_full, Ts * D_);
  }
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
