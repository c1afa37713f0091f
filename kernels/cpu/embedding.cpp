// Embedding on the CPU: rows copied in parallel; the backward splits columns across threads so
// repeated tokens never race and the summation order is fixed.
#include "kernels/embedding.h"

#include <cstring>

namespace moe {

void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t T, int64_t D) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    if (tokens[t] < 0) {
      std::memset(out + t * D, 0, sizeof(float) * D);
    } else {
      std::memcpy(out + t * D, table + int64_t(tokens[t]) * D, sizeof(float) * D);
    }
  }
}

void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D) {
  constexpr int64_t kBlock = 64;
  int64_t blocks = (D + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t c0 = b * kBlock, c1 = c0 + kBlock < D ? c0 + kBlock : D;
    for (int64_t t = 0; t < T; ++t) {
      if (tokens[t] < 0) continue;
      float* dst = dtable + int64_t(tokens[t]) * D;
      const float* src = dout + t * D;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace moe
