// Causal attention on the CPU: per (batch, head) GEMMs through OpenBLAS, cut into row blocks so
// the upper triangle of the score matrix is never computed.
#include "kernels/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/gemm.h"

namespace moe {

static constexpr int64_t kRowBlock = 64;

void attention_forward(const float* q, const float* k, const float* v, float* out, float* probs, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t group = H / Hkv;
  const int64_t ldq = H * hd, ldk = Hkv * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const float* qb = q + b * S * ldq + h * hd;
      const float* kb = k + b * S * ldk + (h / group) * hd;
      const float* vb = v + b * S * ldk + (h / group) * hd;
      float* ob = out + b * S * ldq + h * hd;
      float* P = probs + (b * H + h) * S * S;
      for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
        int64_t r1 = std::min(S, r0 + kRowBlock);
        // scores[r0:r1, 0:r1] = q[r0:r1] k[0:r1]^T * scale
        gemm(false, true, r1 - r0, r1, hd, scale, qb + r0 * ldq, ldq, kb, ldk, 0.0f, P + r0 * S, S);
        for (int64_t i = r0; i < r1; ++i) {
          float* row = P + i * S;
          float mx = row[0];
          for (int64_t j = 1; j <= i; ++j) mx = std::max(mx, row[j]);
          float sum = 0;
          for (int64_t j = 0; j <= i; ++j) {
            row[j] = std::exp(row[j] - mx);
            sum += row[j];
          }
          float inv = 1.0f / sum;
          for (int64_t j = 0; j <= i; ++j) row[j] *= inv;
          std::memset(row + i + 1, 0, sizeof(float) * (S - i - 1));
        }
        // out[r0:r1] = P[r0:r1, 0:r1] v[0:r1]
        gemm(false, false, r1 - r0, hd, r1, 1.0f, P + r0 * S, S, vb, ldk, 0.0f, ob + r0 * ldq, ldq);
      }
    }
}

void attention_backward(const float* q, const float* k, const float* v, const float* probs, const float* dout,
                        float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t group = H / Hkv;
  const int64_t ldq = H * hd, ldk = Hkv * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
#pragma omp parallel
  {
    std::vector<float> dS(kRowBlock * S);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t g = 0; g < Hkv; ++g) {
        const float* kb = k + b * S * ldk + g * hd;
        const float* vb = v + b * S * ldk + g * hd;
        float* dkb = dk + b * S * ldk + g * hd;
        float* dvb = dv + b * S * ldk + g * hd;
        for (int64_t s = 0; s < S; ++s) {
          std::memset(dkb + s * ldk, 0, sizeof(float) * hd);
          std::memset(dvb + s * ldk, 0, sizeof(float) * hd);
        }
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const float* qb = q + b * S * ldq + h * hd;
          const float* dob = dout + b * S * ldq + h * hd;
          float* dqb = dq + b * S * ldq + h * hd;
          const float* P = probs + (b * H + h) * S * S;
          for (int64_t r0 = 0; r0 < S; r0 += kRowBlock) {
            int64_t r1 = std::min(S, r0 + kRowBlock), rows = r1 - r0;
            // dV[0:r1] += P[r0:r1, 0:r1]^T dO[r0:r1]
            gemm(true, false, r1, hd, rows, 1.0f, P + r0 * S, S, dob + r0 * ldq, ldq, 1.0f, dvb, ldk);
            // dP = dO[r0:r1] V[0:r1]^T
            gemm(false, true, rows, r1, hd, 1.0f, dob + r0 * ldq, ldq, vb, ldk, 0.0f, dS.data(), S);
            // dS = P * (dP - rowsum(dP * P)) * scale
            for (int64_t i = 0; i < rows; ++i) {
              const float* pr = P + (r0 + i) * S;
              float* dr = dS.data() + i * S;
              int64_t n = r0 + i + 1;
              float dot = 0;
              for (int64_t j = 0; j < n; ++j) dot += dr[j] * pr[j];
              for (int64_t j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - dot) * scale;
              for (int64_t j = n; j < r1; ++j) dr[j] = 0.0f;
            }
            // dQ[r0:r1] = dS K[0:r1];  dK[0:r1] += dS^T Q[r0:r1]
            gemm(false, false, rows, hd, r1, 1.0f, dS.data(), S, kb, ldk, 0.0f, dqb + r0 * ldq, ldq);
            gemm(true, false, r1, hd, rows, 1.0f, dS.data(), S, qb + r0 * ldq, ldq, 1.0f, dkb, ldk);
          }
        }
      }
  }
}

}  // namespace moe
