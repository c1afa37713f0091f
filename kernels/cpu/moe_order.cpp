// Order / Unorder on the CPU. The sort is sequential (O(T*k), negligible); the row moves are parallel.
#include "kernels/moe_order.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace moe {

int64_t moe_order(const int32_t* idx, int64_t T, int64_t k, int64_t E, const int64_t* capacity, int64_t* counts,
                  int64_t* offsets, int64_t* slot, int32_t* row_token) {
  std::vector<int64_t> kept(E, 0);
  for (int64_t e = 0; e < E; ++e) counts[e] = 0;
  for (int64_t a = 0; a < T * k; ++a) {
    int32_t e = idx[a];
    counts[e]++;
    if (!capacity || kept[e] < capacity[e]) kept[e]++;
  }
  offsets[0] = 0;
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] = offsets[e] + kept[e];
  std::vector<int64_t> cursor(offsets, offsets + E);
  for (int64_t a = 0; a < T * k; ++a) {
    int32_t e = idx[a];
    if (cursor[e] < offsets[e + 1]) {
      slot[a] = cursor[e];
      row_token[cursor[e]] = int32_t(a / k);
      cursor[e]++;
    } else {
      slot[a] = -1;
    }
  }
  return offsets[E];
}

void moe_chunk_offsets(const int64_t* offsets, int64_t E, int64_t C, int64_t* chunk_offsets) {
  int64_t at = 0;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t e = 0; e < E; ++e) {
      const int64_t n = offsets[e + 1] - offsets[e];
      chunk_offsets[c * E + e] = at;
      at += n * (c + 1) / C - n * c / C;
    }
  chunk_offsets[C * E] = at;
}

void moe_to_chunk_major(const int64_t* offsets, const int64_t* chunk_offsets, int64_t E, int64_t C,
                        int32_t* row_token, int64_t* slot, int64_t n) {
  const int64_t rows = offsets[E];
  std::vector<int64_t> place(static_cast<size_t>(rows));
  std::vector<int32_t> moved(static_cast<size_t>(rows));
  for (int64_t e = 0; e < E; ++e) {
    const int64_t ne = offsets[e + 1] - offsets[e];
    for (int64_t c = 0; c < C; ++c)  // chunk c of expert e, in row order
      for (int64_t i = ne * c / C; i < ne * (c + 1) / C; ++i)
        place[size_t(offsets[e] + i)] = chunk_offsets[c * E + e] + i - ne * c / C;
  }
  for (int64_t r = 0; r < rows; ++r) moved[size_t(place[size_t(r)])] = row_token[r];
  std::copy(moved.begin(), moved.end(), row_token);
  for (int64_t a = 0; a < n; ++a)
    if (slot[a] >= 0) slot[a] = place[size_t(slot[a])];
}

void moe_gather(const float* x, const int32_t* row_token, int64_t n, int64_t D, float* xs) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < n; ++r) std::memcpy(xs + r * D, x + int64_t(row_token[r]) * D, sizeof(float) * D);
}

void moe_gather_backward(const float* dxs, const int64_t* slot, int64_t T, int64_t k, int64_t D, float* dx) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float* out = dx + t * D;
    std::memset(out, 0, sizeof(float) * D);
    for (int64_t j = 0; j < k; ++j) {
      int64_t r = slot[t * k + j];
      if (r < 0) continue;
      const float* src = dxs + r * D;
      for (int64_t i = 0; i < D; ++i) out[i] += src[i];
    }
  }
}

void moe_unorder_forward(const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t D,
                         float* y) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    float* out = y + t * D;
    std::memset(out, 0, sizeof(float) * D);
    for (int64_t j = 0; j < k; ++j) {
      int64_t r = slot[t * k + j];
      if (r < 0) continue;
      float wt = w[t * k + j];
      const float* src = ye + r * D;
      for (int64_t i = 0; i < D; ++i) out[i] += wt * src[i];
    }
  }
}

void moe_unorder_backward(const float* dy, const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k,
                          int64_t D, float* dye, float* dw) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* g = dy + t * D;
    for (int64_t j = 0; j < k; ++j) {
      int64_t r = slot[t * k + j];
      if (r < 0) {
        dw[t * k + j] = 0.0f;
        continue;
      }
      float wt = w[t * k + j];
      const float* src = ye + r * D;
      float* dst = dye + r * D;
      float dot = 0;
      for (int64_t i = 0; i < D; ++i) {
        dot += g[i] * src[i];
        dst[i] = wt * g[i];
      }
      dw[t * k + j] = dot;
    }
  }
}

}  // namespace moe
