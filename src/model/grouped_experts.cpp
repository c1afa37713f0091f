// Grouped SwiGLU experts.
#include "model/grouped_experts.h"

#include "kernels/gemm.h"
#include "kernels/swiglu.h"

namespace moe {

GroupedExperts::GroupedExperts(ParamStore& store, const std::string& prefix, int64_t E, int64_t E_local,
                               int64_t first_expert, int64_t D, int64_t Fe, double init_std, double out_init_std)
    : w1_(store.add_split(prefix + "/w1", {E, Fe, D}, Split::Ep, 0, int(E / E_local), int(first_expert / E_local),
                          Init::Normal, init_std)),
      w3_(store.add_split(prefix + "/w3", {E, Fe, D}, Split::Ep, 0, int(E / E_local), int(first_expert / E_local),
                          Init::Normal, init_std)),
      w2_(store.add_split(prefix + "/w2", {E, D, Fe}, Split::Ep, 0, int(E / E_local), int(first_expert / E_local),
                          Init::Normal, out_init_std)),
      El_(E_local),
      D_(D),
      Fe_(Fe) {}

void GroupedExperts::forward(const float* x, const int64_t* offsets, int64_t num_groups, float* y) {
  x_ = x;
  offsets_ = offsets;
  groups_ = num_groups;
  rows_ = offsets[num_groups];
  const int64_t G = groups_;
  g_.resize({rows_, Fe_});
  u_.resize({rows_, Fe_});
  h_.resize({rows_, Fe_});
  gemm_grouped_rows(G, El_, offsets, true, Fe_, D_, 1.0f, x, D_, w1_.value.data(), Fe_ * D_, D_, 0.0f, g_.data(), Fe_);
  gemm_grouped_rows(G, El_, offsets, true, Fe_, D_, 1.0f, x, D_, w3_.value.data(), Fe_ * D_, D_, 0.0f, u_.data(), Fe_);
  swiglu_forward(g_.data(), u_.data(), h_.data(), rows_ * Fe_);
  gemm_grouped_rows(G, El_, offsets, true, D_, Fe_, 1.0f, h_.data(), Fe_, w2_.value.data(), D_ * Fe_, Fe_, 0.0f, y, D_);
}

void GroupedExperts::backward(const float* dy, float* dx) {
  const int64_t* off = offsets_;
  const int64_t G = groups_;
  gemm_grouped_weight_grad(G, El_, off, D_, Fe_, dy, D_, h_.data(), Fe_, w2_.grad.data(), D_ * Fe_);
  gemm_grouped_rows(G, El_, off, false, Fe_, D_, 1.0f, dy, D_, w2_.value.data(), D_ * Fe_, Fe_, 0.0f, h_.data(), Fe_);
  swiglu_backward(g_.data(), u_.data(), h_.data(), g_.data(), u_.data(), rows_ * Fe_);
  gemm_grouped_weight_grad(G, El_, off, Fe_, D_, g_.data(), Fe_, x_, D_, w1_.grad.data(), Fe_ * D_);
  gemm_grouped_weight_grad(G, El_, off, Fe_, D_, u_.data(), Fe_, x_, D_, w3_.grad.data(), Fe_ * D_);
  gemm_grouped_rows(G, El_, off, false, D_, Fe_, 1.0f, g_.data(), Fe_, w1_.value.data(), Fe_ * D_, D_, 0.0f, dx, D_);
  gemm_grouped_rows(G, El_, off, false, D_, Fe_, 1.0f, u_.data(), Fe_, w3_.value.data(), Fe_ * D_, D_, 1.0f, dx, D_);
}

}  // namespace moe
