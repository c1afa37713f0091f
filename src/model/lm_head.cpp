// LM head + cross-entropy, chunked over tokens, vocabulary-parallel.
#include "model/lm_head.h"

#include <algorithm>
#include <cmath>

#include "core/profiler.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"

namespace moe {

double LmHead::forward_backward(const float* x, const int32_t* targets, int64_t T, float* dx, float grad_scale) {
  ScopedPhase phase("lm_head_loss");
  const int64_t V = weight_.value.dim(0), lo = weight_.shard_offset;
  const bool split = tp_->size() > 1;
  // Chunk so that the logits buffer stays near 32 MiB whatever the vocabulary.
  const int64_t chunk = std::max<int64_t>(64, std::min<int64_t>(T, (int64_t(8) << 20) / V));
  logits_.resize({chunk, V});
  row_max_.resize(chunk);
  sum_exp_.resize(chunk);
  target_logit_.resize(chunk);
  local_targets_.resize(chunk);
  const float* W = weight_.value.data();
  double sum = 0;
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t id = targets[t0 + i] - lo;
      local_targets_[i] = (id >= 0 && id < V) ? int32_t(id) : -1;
    }
    gemm(false, true, n, V, D_, 1.0f, x + t0 * D_, D_, W, D_, 0.0f, logits_.data(), V);
    cross_entropy_row_max(logits_.data(), n, V, row_max_.data());
    if (split) {
      ScopedPhase comm("tp_allreduce");
      tp_->all_reduce_max(row_max_.data(), n);
    }
    cross_entropy_sum_exp(logits_.data(), row_max_.data(), n, V, sum_exp_.data());
    cross_entropy_target_logit(logits_.data(), local_targets_.data(), n, V, target_logit_.data());
    if (split) {
      ScopedPhase comm("tp_allreduce");
      tp_->all_reduce_sum(sum_exp_.data(), n);
      tp_->all_reduce_sum(target_logit_.data(), n);
    }
    for (int64_t i = 0; i < n; ++i) sum += std::log(sum_exp_[i]) + row_max_[i] - target_logit_[i];
    if (dx) {
      cross_entropy_backward(logits_.data(), local_targets_.data(), row_max_.data(), sum_exp_.data(), n, V, grad_scale,
                             logits_.data());
      gemm(true, false, V, D_, n, 1.0f, logits_.data(), V, x + t0 * D_, D_, 1.0f, weight_.grad.data(), D_);
      gemm(false, false, n, D_, V, 1.0f, logits_.data(), V, W, D_, 0.0f, dx + t0 * D_, D_);
    }
  }
  if (dx && split) {
    ScopedPhase comm("tp_allreduce");
    tp_->all_reduce_sum(dx, T * D_);  // each shard's part of dlogits W
  }
  return sum;
}

}  // namespace moe
