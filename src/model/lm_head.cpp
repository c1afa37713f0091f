// LM head + cross-entropy, chunked over tokens.
#include "model/lm_head.h"

#include <algorithm>

#include "core/profiler.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"

namespace moe {

double LmHead::forward_backward(const float* x, const int32_t* targets, int64_t T, float* dx, float grad_scale) {
  ScopedPhase phase("lm_head_loss");
  // Chunk so that the logits buffer stays near 32 MiB whatever the vocabulary.
  const int64_t chunk = std::max<int64_t>(64, std::min<int64_t>(T, (int64_t(8) << 20) / V_));
  logits_.resize({chunk, V_});
  loss_.resize({T});
  const float* W = weight_.value.data();
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    int64_t n = std::min(chunk, T - t0);
    gemm(false, true, n, V_, D_, 1.0f, x + t0 * D_, D_, W, D_, 0.0f, logits_.data(), V_);
    cross_entropy_forward_backward(logits_.data(), targets + t0, n, V_, loss_.data() + t0,
                                   dx ? logits_.data() : nullptr, grad_scale);
    if (dx) {
      gemm(true, false, V_, D_, n, 1.0f, logits_.data(), V_, x + t0 * D_, D_, 1.0f, weight_.grad.data(), D_);
      gemm(false, false, n, D_, V_, 1.0f, logits_.data(), V_, W, D_, 0.0f, dx + t0 * D_, D_);
    }
  }
  double sum = 0;
  for (int64_t t = 0; t < T; ++t) sum += loss_.data()[t];
  return sum;
}

}  // namespace moe
