// FLOP counting and GEMM peak measurement.
#include "train/flops.h"

#include <algorithm>
#include <vector>

#include "core/profiler.h"
#include "kernels/gemm.h"

namespace moe {

double training_flops_per_token(const ModelConfig& m, int seq_len, double active_matmul_params) {
  double attention = 12.0 * m.n_layers * double(seq_len) * double(m.n_heads) * m.head_dim();
  return 6.0 * active_matmul_params + attention;
}

double measure_gemm_peak_gflops(double seconds) {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n, 0.0f);
  gemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);  // warm-up
  double best = 0, start = now_ms();
  int reps = 0;
  while (reps < 3 || (now_ms() - start) < seconds * 1000.0) {
    double t0 = now_ms();
    gemm(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    double ms = now_ms() - t0;
    best = std::max(best, 2.0 * n * n * n / (ms * 1e6));
    if (++reps >= 50) break;
  }
  return best;
}

}  // namespace moe
