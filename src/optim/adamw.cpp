// AdamW optimizer.
#include "optim/adamw.h"

#include <cmath>

#include "kernels/adamw.h"

namespace moe {

AdamW::AdamW(const OptimConfig& cfg, std::vector<Param*> params) : cfg_(cfg), params_(std::move(params)) {
  for (Param* p : params_) {
    m_.push_back(Tensor::zeros(p->value.shape()));
    v_.push_back(Tensor::zeros(p->value.shape()));
  }
}

void AdamW::step(double lr) {
  ++step_;
  // Bias corrections in double, as PyTorch computes them from Python floats.
  float bc1 = float(1.0 - std::pow(cfg_.beta1, double(step_)));
  float bc2 = float(1.0 - std::pow(cfg_.beta2, double(step_)));
  for (size_t i = 0; i < params_.size(); ++i) {
    Param* p = params_[i];
    float wd = p->decay() ? float(cfg_.weight_decay) : 0.0f;
    adamw_update(p->value.data(), p->grad.data(), m_[i].data(), v_[i].data(), p->value.numel(), float(lr),
                 float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps), wd, bc1, bc2);
  }
}

}  // namespace moe
