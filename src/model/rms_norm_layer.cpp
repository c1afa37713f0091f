// RMSNorm layer.
#include "model/rms_norm_layer.h"

#include "core/profiler.h"
#include "kernels/rms_norm.h"

namespace moe {

RmsNormLayer::RmsNormLayer(ParamStore& store, const std::string& name, int64_t D, float eps)
    : weight_(store.add(name + "/weight", {D}, Init::Ones)), D_(D), eps_(eps) {}

void RmsNormLayer::forward(const float* x, float* y, int64_t T) {
  ScopedPhase phase("norm_fwd");
  x_ = x;
  T_ = T;
  rstd_.resize({T});
  rms_norm_forward(x, weight_.value.data(), y, rstd_.data(), T, D_, eps_);
}

void RmsNormLayer::backward(const float* dy, float* dx) {
  ScopedPhase phase("norm_bwd");
  rms_norm_backward(x_, weight_.value.data(), rstd_.data(), dy, dx, weight_.grad.data(), T_, D_);
}

}  // namespace moe
