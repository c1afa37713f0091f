// Causal attention on the CPU: per (batch, head) GEMMs through OpenBLAS, cut into 64-row query
// blocks so the upper triangle of the score matrix is never computed. The logsumexp of each query
// row is always saved; without a probability cache the backward recomputes a block's
// probabilities from it (one extra GEMM and the exponentials again), so memory is O(S) per head
// rather than O(S^2) and long sequences fit. With a cache (short sequences) nothing is recomputed.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/gemm.h"

namespace moe {

static constexpr int64_t kRowBlock = 64;

namespace {

struct Layout {
  int64_t S, H, Hkv, hd, group, ldq, ldk;
  float scale;
  Layout(int64_t S_, int64_t H_, int64_t Hkv_, int64_t hd_)
      : S(S_), H(H_), Hkv(Hkv_), hd(hd_), group(H_ / Hkv_), ldq(H_ * hd_), ldk(Hkv_ * hd_),
        scale(1.0f / std::sqrt(float(hd_))) {}
};

// P[rows, r1] = exp(q[r0:r1] k[0:r1]^T * scale - lse) for j <= i, 0 above the diagonal.
void recompute_probs(const float* qb, const float* kb, const float* lse, int64_t r0, int64_t r1, const Layout& L,
                     float* P) {
  gemm(false, true, r1 - r0, r1, L.hd, L.scale, qb + r0 * L.ldq, L.ldq, kb, L.ldk, 0.0f, P, L.S);
  for (int64_t i = r0; i < r1; ++i) {
    float* row = P + (i - r0) * L.S;
    const float l = lse[i];
    for (int64_t j = 0; j <= i; ++j) row[j] = std::exp(row[j] - l);
    std::fill(row + i + 1, row + r1, 0.0f);
  }
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd, float* probs_cache) {
  const Layout L(S, H, Hkv, hd);
#pragma omp parallel
  {
    std::vector<float> scratch(probs_cache ? 0 : kRowBlock * S);  // one row block of scores / probabilities
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const float* qb = q + b * S * L.ldq + h * hd;
        const float* kb = k + b * S * L.ldk + (h / L.group) * hd;
        const float* vb = v + b * S * L.ldk + (h / L.group) * hd;
        float* ob = out + b * S * L.ldq + h * hd;
        float* lb = lse + (b * H + h) * S;
        for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
          const int64_t r1 = std::min(S, r0 + kRowBlock);
          float* P = probs_cache ? probs_cache + ((b * H + h) * S + r0) * S : scratch.data();
          // scores[r0:r1, 0:r1] = q[r0:r1] k[0:r1]^T * scale
          gemm(false, true, r1 - r0, r1, hd, L.scale, qb + r0 * L.ldq, L.ldq, kb, L.ldk, 0.0f, P, S);
          float row_max[kRowBlock], row_sum[kRowBlock];
          for (int64_t i = r0; i < r1; ++i) {
            float* row = P + (i - r0) * S;
            float mx = row[0];
            for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
            float sum = 0;
            for (int64_t j = 0; j <= i; ++j) {
              row[j] = std::exp(row[j] - mx);
              sum += row[j];
            }
            const float inv = 1.0f / sum;
            for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
            std::fill(row + i + 1, row + r1, 0.0f);
            row_max[i - r0] = mx;
            row_sum[i - r0] = sum;
          }
          // logsumexp in a loop of its own: a log call inside the loop above makes it 40% slower (GCC 12)
          for (int64_t i = r0; i < r1; ++i) lb[i] = row_max[i - r0] + std::log(row_sum[i - r0]);
          // out[r0:r1] = P[r0:r1, 0:r1] v[0:r1]
          gemm(false, false, r1 - r0, hd, r1, 1.0f, P, S, vb, L.ldk, 0.0f, ob + r0 * L.ldq, L.ldq);
        }
      }
  }
}

void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd, const float* probs_cache) {
  const Layout L(S, H, Hkv, hd);
#pragma omp parallel
  {
    std::vector<float> scratch(probs_cache ? 0 : kRowBlock * S), dS(kRowBlock * S);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < Hkv; ++g) {
        const float* kb = k + b * S * L.ldk + g * hd;
        const float* vb = v + b * S * L.ldk + g * hd;
        float* dkb = dk + b * S * L.ldk + g * hd;
        float* dvb = dv + b * S * L.ldk + g * hd;
        for (int64_t s = 0; s < S; ++s) {
          std::memset(dkb + s * L.ldk, 0, sizeof(float) * hd);
          std::memset(dvb + s * L.ldk, 0, sizeof(float) * hd);
        }
        for (int64_t h = g * L.group; h < (g + 1) * L.group; ++h) {
          const float* qb = q + b * S * L.ldq + h * hd;
          const float* obh = out + b * S * L.ldq + h * hd;
          const float* dob = dout + b * S * L.ldq + h * hd;
          const float* lb = lse + (b * H + h) * S;
          float* dqb = dq + b * S * L.ldq + h * hd;
          for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
            const int64_t r1 = std::min(S, r0 + kRowBlock), rows = r1 - r0;
            const float* P = probs_cache ? probs_cache + ((b * H + h) * S + r0) * S : scratch.data();
            if (!probs_cache) recompute_probs(qb, kb, lb, r0, r1, L, scratch.data());
            // dV[0:r1] += P^T dO[r0:r1]
            gemm(true, false, r1, hd, rows, 1.0f, P, S, dob + r0 * L.ldq, L.ldq, 1.0f, dvb, L.ldk);
            // dP = dO[r0:r1] V[0:r1]^T
            gemm(false, true, rows, r1, hd, 1.0f, dob + r0 * L.ldq, L.ldq, vb, L.ldk, 0.0f, dS.data(), S);
            // dS = P * (dP - delta) * scale, delta_i = dO_i . O_i (= sum_j dP_ij P_ij)
            for (int64_t i = 0; i < rows; ++i) {
              const float* o_row = obh + (r0 + i) * L.ldq;
              const float* do_row = dob + (r0 + i) * L.ldq;
              float d = 0;
              for (int64_t c = 0; c < hd; ++c) d += do_row[c] * o_row[c];
              const float* pr = P + i * S;
              float* dr = dS.data() + i * S;
              const int64_t n = r0 + i + 1;
              for (int64_t j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - d) * L.scale;
              std::fill(dr + n, dr + r1, 0.0f);
            }
            // dQ[r0:r1] = dS K[0:r1];  dK[0:r1] += dS^T Q[r0:r1]
            gemm(false, false, rows, hd, r1, 1.0f, dS.data(), S, kb, L.ldk, 0.0f, dqb + r0 * L.ldq, L.ldq);
            gemm(true, false, r1, hd, rows, 1.0f, dS.data(), S, qb + r0 * L.ldq, L.ldq, 1.0f, dkb, L.ldk);
          }
        }
      }
  }
}

}  // namespace moe
