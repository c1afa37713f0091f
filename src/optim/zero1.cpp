// ZeRO-1 sharded AdamW state.
#include "optim/zero1.h"

#include <algorithm>
#include <cstring>

#include "core/profiler.h"
#include "kernels/adamw.h"
#include "kernels/elementwise.h"

namespace moe {

Zero1Shard::Zero1Shard(std::vector<Param*> params, Communicator* dp) : params_(std::move(params)), dp_(dp) {
  for (Param* p : params_) {
    offset_.push_back(total_);
    total_ += p->value.numel();
  }
  const int64_t n = dp_->size();
  shard_ = (total_ + n - 1) / n;
  lo_ = dp_->rank() * shard_;
  flat_.assign(size_t(shard_ * n), 0.0f);
  grad_shard_.assign(size_t(shard_), 0.0f);
  m_.assign(size_t(shard_), 0.0f);
  v_.assign(size_t(shard_), 0.0f);
}

template <class F>
void Zero1Shard::for_each_piece(F&& f) const {
  const int64_t hi = std::min(total_, lo_ + shard_);
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t a = std::max(lo_, offset_[i]);
    const int64_t b = std::min(hi, offset_[i] + params_[i]->value.numel());
    if (a < b) f(i, a - offset_[i], b - a, a - lo_);
  }
}

void Zero1Shard::reduce_scatter_grads() {
  ScopedPhase phase("grad_sync");
  for (size_t i = 0; i < params_.size(); ++i)
    std::memcpy(flat_.data() + offset_[i], params_[i]->grad.data(), sizeof(float) * params_[i]->grad.numel());
  std::fill(flat_.begin() + total_, flat_.end(), 0.0f);
  dp_->reduce_scatter_sum(flat_.data(), grad_shard_.data(), shard_);
}

double Zero1Shard::grad_sumsq(bool tp_split) const {
  double s = 0;
  for_each_piece([&](size_t i, int64_t, int64_t count, int64_t at) {
    if (params_[i]->sharded() == tp_split) s += sum_squares(grad_shard_.data() + at, count);
  });
  return s;
}

void Zero1Shard::scale_grads(float s) { scale_inplace(grad_shard_.data(), shard_, s); }

void Zero1Shard::update(float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2) {
  for_each_piece([&](size_t i, int64_t first, int64_t count, int64_t at) {
    Param* p = params_[i];
    adamw_update(p->value.data() + first, grad_shard_.data() + at, m_.data() + at, v_.data() + at, count, lr, beta1,
                 beta2, eps, p->decay() ? weight_decay : 0.0f, bc1, bc2);
  });
  // Pack the owned (updated) values, all-gather, unpack everything.
  std::vector<float> mine(size_t(shard_), 0.0f);
  for_each_piece([&](size_t i, int64_t first, int64_t count, int64_t at) {
    std::memcpy(mine.data() + at, params_[i]->value.data() + first, sizeof(float) * count);
  });
  {
    ScopedPhase phase("param_gather");
    dp_->all_gather(mine.data(), flat_.data(), shard_);
  }
  for (size_t i = 0; i < params_.size(); ++i)
    std::memcpy(params_[i]->value.data(), flat_.data() + offset_[i], sizeof(float) * params_[i]->value.numel());
}

Tensor Zero1Shard::full_moment(size_t i, int which) {
  const std::vector<float>& mine = which == 0 ? m_ : v_;
  std::vector<float> all(size_t(shard_ * dp_->size()));
  dp_->all_gather(mine.data(), all.data(), shard_);
  Tensor t = Tensor::empty(params_[i]->value.shape());
  std::memcpy(t.data(), all.data() + offset_[i], sizeof(float) * t.numel());
  return t;
}

void Zero1Shard::set_moment(size_t i, int which, const Tensor& full) {
  std::vector<float>& mine = which == 0 ? m_ : v_;
  for_each_piece([&](size_t j, int64_t first, int64_t count, int64_t at) {
    if (j == i) std::memcpy(mine.data() + at, full.data() + first, sizeof(float) * count);
  });
}

}  // namespace moe
