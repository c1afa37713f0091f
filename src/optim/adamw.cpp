// AdamW optimizer, with optional ZeRO-1 sharding of the replicated parameters' state.
#include "optim/adamw.h"

#include <cmath>

#include "kernels/adamw.h"
#include "kernels/elementwise.h"

namespace moe {

AdamW::AdamW(const OptimConfig& cfg, std::vector<Param*> params, Communicator* zero_group)
    : cfg_(cfg), params_(std::move(params)) {
  const bool zero = zero_group != nullptr && zero_group->size() > 1;
  std::vector<Param*> replicated;
  for (Param* p : params_) {
    if (zero && !p->expert()) {
      zero_index_.push_back(int(replicated.size()));
      replicated.push_back(p);
      m_.emplace_back();
      v_.emplace_back();
    } else {
      zero_index_.push_back(-1);
      m_.push_back(Tensor::zeros(p->value.shape()));
      v_.push_back(Tensor::zeros(p->value.shape()));
    }
  }
  if (zero) zero_ = std::make_unique<Zero1Shard>(replicated, zero_group);
}

void AdamW::reduce_scatter_gradients() {
  if (zero_) zero_->reduce_scatter_grads();
}

AdamW::GradSumsq AdamW::grad_sumsq() const {
  GradSumsq s;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (zero_index_[i] >= 0) continue;
    const Param* p = params_[i];
    double v = sum_squares(p->grad.data(), p->grad.numel());
    (p->expert() ? s.expert : p->sharded() ? s.tp_split : s.replicated) += v;
  }
  if (zero_) {
    s.tp_split += zero_->grad_sumsq(true);
    s.replicated += zero_->grad_sumsq(false);
  }
  return s;
}

void AdamW::scale_gradients(float s) {
  for (size_t i = 0; i < params_.size(); ++i)
    if (zero_index_[i] < 0) scale_inplace(params_[i]->grad.data(), params_[i]->grad.numel(), s);
  if (zero_) zero_->scale_grads(s);
}

void AdamW::step(double lr) {
  ++step_;
  // Bias corrections in double, as PyTorch computes them from Python floats.
  float bc1 = float(1.0 - std::pow(cfg_.beta1, double(step_)));
  float bc2 = float(1.0 - std::pow(cfg_.beta2, double(step_)));
  for (size_t i = 0; i < params_.size(); ++i) {
    if (zero_index_[i] >= 0) continue;
    Param* p = params_[i];
    float wd = p->decay() ? float(cfg_.weight_decay) : 0.0f;
    adamw_update(p->value.data(), p->grad.data(), m_[i].data(), v_[i].data(), p->value.numel(), float(lr),
                 float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps), wd, bc1, bc2);
  }
  if (zero_)
    zero_->update(float(lr), float(cfg_.beta1), float(cfg_.beta2), float(cfg_.eps), float(cfg_.weight_decay), bc1,
                  bc2);
}

Tensor AdamW::moment(size_t i, int which) {
  if (zero_index_[i] >= 0) return zero_->full_moment(size_t(zero_index_[i]), which);
  return which == 0 ? m_[i] : v_[i];
}

void AdamW::set_moment(size_t i, int which, const Tensor& value) {
  if (zero_index_[i] >= 0) {
    zero_->set_moment(size_t(zero_index_[i]), which, value);
  } else {
    (which == 0 ? m_[i] : v_[i]).copy_from(value);
  }
}

}  // namespace moe
