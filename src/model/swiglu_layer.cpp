// SwiGLU feed-forward layer.
#include "model/swiglu_layer.h"

#include "core/error.h"
#include "core/profiler.h"
#include "kernels/gemm.h"
#include "kernels/swiglu.h"

namespace moe {

SwiGluLayer::SwiGluLayer(ParamStore& store, const std::string& prefix, int64_t D, int64_t F, double init_std,
                         double out_init_std, const char* fwd_phase, const char* bwd_phase, Communicator* tp)
    : tp_(tp && tp->size() > 1 ? tp : nullptr),
      w1_(store.add_split(prefix + "/w1", {F, D}, tp ? Split::Tp : Split::None, 0, tp ? tp->size() : 1,
                          tp ? tp->rank() : 0, Init::Normal, init_std)),
      w3_(store.add_split(prefix + "/w3", {F, D}, tp ? Split::Tp : Split::None, 0, tp ? tp->size() : 1,
                          tp ? tp->rank() : 0, Init::Normal, init_std)),
      w2_(store.add_split(prefix + "/w2", {D, F}, tp ? Split::Tp : Split::None, 1, tp ? tp->size() : 1,
                          tp ? tp->rank() : 0, Init::Normal, out_init_std)),
      D_(D),
      F_(F / (tp ? tp->size() : 1)),
      fwd_phase_(fwd_phase),
      bwd_phase_(bwd_phase) {}

void SwiGluLayer::forward(const float* x, float* y, int64_t T) {
  ScopedPhase phase(fwd_phase_);
  x_ = x;
  T_ = T;
  g_.resize({T, F_});
  u_.resize({T, F_});
  h_.resize({T, F_});
  gemm(false, true, T, F_, D_, 1.0f, x, D_, w1_.value.data(), D_, 0.0f, g_.data(), F_);
  gemm(false, true, T, F_, D_, 1.0f, x, D_, w3_.value.data(), D_, 0.0f, u_.data(), F_);
  swiglu_forward(g_.data(), u_.data(), h_.data(), T * F_);
  gemm(false, true, T, D_, F_, 1.0f, h_.data(), F_, w2_.value.data(), F_, 0.0f, y, D_);
  if (tp_) {
    ScopedPhase comm("tp_allreduce");
    tp_->all_reduce_sum(y, T * D_);
  }
}

void SwiGluLayer::mark_token_sliced() {
  for (Param* p : {&w1_, &w3_, &w2_}) p->token_sliced = true;
}

void SwiGluLayer::backward(const float* dy, float* dx, bool accumulate) {
  ScopedPhase phase(bwd_phase_);
  const int64_t T = T_;
  // dh = dy W2 (into h's buffer after using h for dW2)
  gemm(true, false, D_, F_, T, 1.0f, dy, D_, h_.data(), F_, 1.0f, w2_.grad.data(), F_);
  gemm(false, false, T, F_, D_, 1.0f, dy, D_, w2_.value.data(), F_, 0.0f, h_.data(), F_);
  // dg, du overwrite g, u in place
  swiglu_backward(g_.data(), u_.data(), h_.data(), g_.data(), u_.data(), T * F_);
  gemm(true, false, F_, D_, T, 1.0f, g_.data(), F_, x_, D_, 1.0f, w1_.grad.data(), D_);
  gemm(true, false, F_, D_, T, 1.0f, u_.data(), F_, x_, D_, 1.0f, w3_.grad.data(), D_);
  gemm(false, false, T, D_, F_, 1.0f, g_.data(), F_, w1_.value.data(), D_, accumulate ? 1.0f : 0.0f, dx, D_);
  gemm(false, false, T, D_, F_, 1.0f, u_.data(), F_, w3_.value.data(), D_, 1.0f, dx, D_);
  if (tp_) {
    MOE_CHECK(!accumulate, "a tensor-parallel SwiGLU cannot accumulate into its input gradient");
    ScopedPhase comm("tp_allreduce");
    tp_->all_reduce_sum(dx, T * D_);
  }
}

}  // namespace moe
