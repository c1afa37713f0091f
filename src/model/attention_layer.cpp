// Attention layer: projections through GEMM, RoPE and causal attention through kernels/.
#include "model/attention_layer.h"

#include <cmath>

#include "core/profiler.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "kernels/rope.h"

namespace moe {

AttentionLayer::AttentionLayer(ParamStore& store, const std::string& prefix, const ModelConfig& cfg,
                               int num_layers_for_init, Communicator* tp)
    : tp_(tp),
      wq_(store.add_split(prefix + "/wq", {int64_t(cfg.n_heads) * cfg.head_dim(), cfg.d_model}, Split::Tp, 0,
                          tp->size(), tp->rank(), Init::Normal, cfg.init_std)),
      wk_(store.add_split(prefix + "/wk", {int64_t(cfg.n_kv_heads) * cfg.head_dim(), cfg.d_model}, Split::Tp, 0,
                          tp->size(), tp->rank(), Init::Normal, cfg.init_std)),
      wv_(store.add_split(prefix + "/wv", {int64_t(cfg.n_kv_heads) * cfg.head_dim(), cfg.d_model}, Split::Tp, 0,
                          tp->size(), tp->rank(), Init::Normal, cfg.init_std)),
      wo_(store.add_split(prefix + "/wo", {cfg.d_model, int64_t(cfg.n_heads) * cfg.head_dim()}, Split::Tp, 1,
                          tp->size(), tp->rank(), Init::Normal, cfg.init_std / std::sqrt(2.0 * num_layers_for_init))),
      D_(cfg.d_model),
      H_(cfg.n_heads / tp->size()),
      Hkv_(cfg.n_kv_heads / tp->size()),
      hd_(cfg.head_dim()),
      theta_(cfg.rope_theta) {}

void AttentionLayer::forward(const float* a, float* y, int64_t B, int64_t S) {
  ScopedPhase phase("attention_fwd");
  a_ = a;
  B_ = B;
  S_ = S;
  const int64_t T = B * S, dq = H_ * hd_, dkv = Hkv_ * hd_;
  q_.resize({T, dq});
  k_.resize({T, dkv});
  v_.resize({T, dkv});
  o_.resize({T, dq});
  lse_.resize({B, H_, S});
  // Short sequences keep the probabilities for the backward; long ones recompute them (O(S) memory).
  const bool cache = B * H_ * S * S * int64_t(sizeof(float)) <= kProbsCacheBytes;
  if (cache) probs_.resize({B, H_, S, S});
  probs_cached_ = cache;
  gemm(false, true, T, dq, D_, 1.0f, a, D_, wq_.value.data(), D_, 0.0f, q_.data(), dq);
  gemm(false, true, T, dkv, D_, 1.0f, a, D_, wk_.value.data(), D_, 0.0f, k_.data(), dkv);
  gemm(false, true, T, dkv, D_, 1.0f, a, D_, wv_.value.data(), D_, 0.0f, v_.data(), dkv);
  rope_forward(q_.data(), B, S, H_, hd_, theta_);
  rope_forward(k_.data(), B, S, Hkv_, hd_, theta_);
  attention_forward(q_.data(), k_.data(), v_.data(), o_.data(), lse_.data(), B, S, H_, Hkv_, hd_,
                    cache ? probs_.data() : nullptr);
  gemm(false, true, T, D_, dq, 1.0f, o_.data(), dq, wo_.value.data(), dq, 0.0f, y, D_);
  if (tp_->size() > 1) {
    ScopedPhase comm("tp_allreduce");
    tp_->all_reduce_sum(y, T * D_);  // sum of the heads' contributions
  }
}

void AttentionLayer::backward(const float* dy, float* da) {
  ScopedPhase phase("attention_bwd");
  const int64_t T = B_ * S_, dq = H_ * hd_, dkv = Hkv_ * hd_;
  do_.resize({T, dq});
  dq_.resize({T, dq});
  dk_.resize({T, dkv});
  dv_.resize({T, dkv});
  // out = o Wo^T  ->  do = dy Wo;  dWo += dy^T o
  gemm(false, false, T, dq, D_, 1.0f, dy, D_, wo_.value.data(), dq, 0.0f, do_.data(), dq);
  gemm(true, false, D_, dq, T, 1.0f, dy, D_, o_.data(), dq, 1.0f, wo_.grad.data(), dq);
  attention_backward(q_.data(), k_.data(), v_.data(), o_.data(), lse_.data(), do_.data(), dq_.data(), dk_.data(),
                     dv_.data(), B_, S_, H_, Hkv_, hd_, probs_cached_ ? probs_.data() : nullptr);
  rope_backward(dq_.data(), B_, S_, H_, hd_, theta_);
  rope_backward(dk_.data(), B_, S_, Hkv_, hd_, theta_);
  gemm(true, false, dq, D_, T, 1.0f, dq_.data(), dq, a_, D_, 1.0f, wq_.grad.data(), D_);
  gemm(true, false, dkv, D_, T, 1.0f, dk_.data(), dkv, a_, D_, 1.0f, wk_.grad.data(), D_);
  gemm(true, false, dkv, D_, T, 1.0f, dv_.data(), dkv, a_, D_, 1.0f, wv_.grad.data(), D_);
  gemm(false, false, T, D_, dq, 1.0f, dq_.data(), dq, wq_.value.data(), D_, 0.0f, da, D_);
  gemm(false, false, T, D_, dkv, 1.0f, dk_.data(), dkv, wk_.value.data(), D_, 1.0f, da, D_);
  gemm(false, false, T, D_, dkv, 1.0f, dv_.data(), dkv, wv_.value.data(), D_, 1.0f, da, D_);
  if (tp_->size() > 1) {
    ScopedPhase comm("tp_allreduce");
    tp_->all_reduce_sum(da, T * D_);
  }
}

}  // namespace moe
