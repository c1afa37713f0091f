// Causal grouped-query attention on the GPU, flash-attention style: the S x S score matrix is never
// stored. The forward keeps, per query row, a running max and sum of exponentials over tiles of
// keys held in shared memory, and saves only logsumexp [B, H, S]; the backward recomputes the
// probabilities tile by tile from it (FlashAttention-2's split: one pass for dK/dV, one for dQ).
// Layouts as kernels/attention.h: q, out, dq: [B, S, H, hd]; k, v, dk, dv: [B, S, Hkv, hd].
// One thread per query (or key) row, head_dim <= 128: written for clarity first.
#include <cfloat>

#include "kernels/attention.h"
#include "kernels/cuda/cuda_check.h"

namespace moe::cuda {
namespace {

constexpr int kRows = 64;    // query (key) rows per block, one per thread
constexpr int kTile = 32;    // key (query) rows per shared-memory tile
constexpr int kMaxHd = 128;

struct Dims {
  int64_t B, S, H, Hkv, hd;
  float scale;
  __device__ int64_t q_at(int64_t b, int64_t s, int64_t h) const { return ((b * S + s) * H + h) * hd; }
  __device__ int64_t kv_at(int64_t b, int64_t s, int64_t g) const { return ((b * S + s) * Hkv + g) * hd; }
};

// The block's threads copy key / value rows j0 .. j0 + kTile of kv head g into shared memory
// (zeros past the end of the sequence).
__device__ void load_kv_tile(const float* k, const float* v, int64_t b, int64_t g, int64_t j0, const Dims& d,
                             float (*ks)[kMaxHd], float (*vs)[kMaxHd]) {
  for (int64_t e = threadIdx.x; e < kTile * d.hd; e += blockDim.x) {
    const int64_t r = e / d.hd, c = e % d.hd, j = j0 + r;
    ks[r][c] = j < d.S ? k[d.kv_at(b, j, g) + c] : 0.0f;
    vs[r][c] = j < d.S ? v[d.kv_at(b, j, g) + c] : 0.0f;
  }
}

__global__ void flash_forward(const float* q, const float* k, const float* v, float* out, float* lse, Dims d) {
  __shared__ float ks[kTile][kMaxHd], vs[kTile][kMaxHd];
  const int64_t bh = blockIdx.y, b = bh / d.H, h = bh % d.H, g = h / (d.H / d.Hkv);
  const int64_t i = int64_t(blockIdx.x) * kRows + threadIdx.x;
  const bool row = i < d.S;
  float qr[kMaxHd], acc[kMaxHd];
  float m = -FLT_MAX, l = 0;
  for (int64_t c = 0; c < d.hd; ++c) {
    qr[c] = row ? q[d.q_at(b, i, h) + c] * d.scale : 0.0f;
    acc[c] = 0;
  }
  const int64_t last = min(d.S, int64_t(blockIdx.x + 1) * kRows);  // keys this block's rows can see
  for (int64_t j0 = 0; j0 < last; j0 += kTile) {
    load_kv_tile(k, v, b, g, j0, d, ks, vs);
    __syncthreads();
    if (row)
      for (int r = 0; r < kTile && j0 + r <= i; ++r) {
        float s = 0;
        for (int64_t c = 0; c < d.hd; ++c) s += qr[c] * ks[r][c];
        const float m_new = fmaxf(m, s), correction = expf(m - m_new), p = expf(s - m_new);
        l = l * correction + p;
        for (int64_t c = 0; c < d.hd; ++c) acc[c] = acc[c] * correction + p * vs[r][c];
        m = m_new;
      }
    __syncthreads();
  }
  if (!row) return;
  for (int64_t c = 0; c < d.hd; ++c) out[d.q_at(b, i, h) + c] = acc[c] / l;
  lse[bh * d.S + i] = m + logf(l);
}

// delta[b, h, i] = dout_i . out_i (the softmax backward's row term)
__global__ void flash_delta(const float* out, const float* dout, float* delta, Dims d) {
  const int64_t n = d.B * d.H * d.S;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bh = e / d.S, i = e % d.S, b = bh / d.H, h = bh % d.H;
    float s = 0;
    for (int64_t c = 0; c < d.hd; ++c) s += dout[d.q_at(b, i, h) + c] * out[d.q_at(b, i, h) + c];
    delta[e] = s;
  }
}

// One thread per key row j of head h: sums over the query rows i >= j. dk, dv are zeroed by the
// caller and accumulated with atomics (the H / Hkv query heads of a kv head add into it).
__global__ void flash_backward_kv(const float* q, const float* k, const float* v, const float* dout, const float* lse,
                                  const float* delta, float* dk, float* dv, Dims d) {
  __shared__ float qs[kTile][kMaxHd], dos[kTile][kMaxHd];
  __shared__ float lses[kTile], deltas[kTile];
  const int64_t bh = blockIdx.y, b = bh / d.H, h = bh % d.H, g = h / (d.H / d.Hkv);
  const int64_t j = int64_t(blockIdx.x) * kRows + threadIdx.x;
  const bool row = j < d.S;
  float kr[kMaxHd], vr[kMaxHd], dkr[kMaxHd], dvr[kMaxHd];
  for (int64_t c = 0; c < d.hd; ++c) {
    kr[c] = row ? k[d.kv_at(b, j, g) + c] : 0.0f;
    vr[c] = row ? v[d.kv_at(b, j, g) + c] : 0.0f;
    dkr[c] = dvr[c] = 0;
  }
  for (int64_t i0 = int64_t(blockIdx.x) * kRows; i0 < d.S; i0 += kTile) {
    for (int64_t e = threadIdx.x; e < kTile * d.hd; e += blockDim.x) {
      const int64_t r = e / d.hd, c = e % d.hd, i = i0 + r;
      qs[r][c] = i < d.S ? q[d.q_at(b, i, h) + c] : 0.0f;
      dos[r][c] = i < d.S ? dout[d.q_at(b, i, h) + c] : 0.0f;
    }
    for (int64_t r = threadIdx.x; r < kTile; r += blockDim.x) {
      lses[r] = i0 + r < d.S ? lse[bh * d.S + i0 + r] : 0.0f;
      deltas[r] = i0 + r < d.S ? delta[bh * d.S + i0 + r] : 0.0f;
    }
    __syncthreads();
    if (row)
      for (int r = 0; r < kTile && i0 + r < d.S; ++r) {
        if (i0 + r < j) continue;  // causal: query i sees key j only when j <= i
        float s = 0, dp = 0;
        for (int64_t c = 0; c < d.hd; ++c) s += qs[r][c] * kr[c], dp += dos[r][c] * vr[c];
        const float p = expf(s * d.scale - lses[r]), ds = p * (dp - deltas[r]);
        for (int64_t c = 0; c < d.hd; ++c) {
          dvr[c] += p * dos[r][c];
          dkr[c] += ds * qs[r][c] * d.scale;
        }
      }
    __syncthreads();
  }
  if (!row) return;
  for (int64_t c = 0; c < d.hd; ++c) {
    atomicAdd(dk + d.kv_at(b, j, g) + c, dkr[c]);
    atomicAdd(dv + d.kv_at(b, j, g) + c, dvr[c]);
  }
}

// One thread per query row i: dq_i = scale * sum_{j <= i} ds_ij k_j (assigned).
__global__ void flash_backward_q(const float* q, const float* k, const float* v, const float* dout, const float* lse,
                                 const float* delta, float* dq, Dims d) {
  __shared__ float ks[kTile][kMaxHd], vs[kTile][kMaxHd];
  const int64_t bh = blockIdx.y, b = bh / d.H, h = bh % d.H, g = h / (d.H / d.Hkv);
  const int64_t i = int64_t(blockIdx.x) * kRows + threadIdx.x;
  const bool row = i < d.S;
  float qr[kMaxHd], dor[kMaxHd], dqr[kMaxHd];
  for (int64_t c = 0; c < d.hd; ++c) {
    qr[c] = row ? q[d.q_at(b, i, h) + c] : 0.0f;
    dor[c] = row ? dout[d.q_at(b, i, h) + c] : 0.0f;
    dqr[c] = 0;
  }
  const float l = row ? lse[bh * d.S + i] : 0.0f, dl = row ? delta[bh * d.S + i] : 0.0f;
  const int64_t last = min(d.S, int64_t(blockIdx.x + 1) * kRows);
  for (int64_t j0 = 0; j0 < last; j0 += kTile) {
    load_kv_tile(k, v, b, g, j0, d, ks, vs);
    __syncthreads();
    if (row)
      for (int r = 0; r < kTile && j0 + r <= i; ++r) {
        float s = 0, dp = 0;
        for (int64_t c = 0; c < d.hd; ++c) s += qr[c] * ks[r][c], dp += dor[c] * vs[r][c];
        const float p = expf(s * d.scale - l), ds = p * (dp - dl);
        for (int64_t c = 0; c < d.hd; ++c) dqr[c] += ds * ks[r][c] * d.scale;
      }
    __syncthreads();
  }
  if (!row) return;
  for (int64_t c = 0; c < d.hd; ++c) dq[d.q_at(b, i, h) + c] = dqr[c];
}

Dims dims_of(int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t hd) {
  MOE_CHECK(hd <= kMaxHd, "CUDA attention: head_dim " << hd << " exceeds " << kMaxHd);
  MOE_CHECK(Hkv > 0 && H % Hkv == 0, "CUDA attention: n_heads " << H << " is not a multiple of n_kv_heads " << Hkv);
  return Dims{B, S, H, Hkv, hd, 1.0f / sqrtf(float(hd))};
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd, Stream stream) {
  if (B * S == 0) return;
  const Dims d = dims_of(B, S, H, Hkv, hd);
  flash_forward<<<dim3(unsigned((S + kRows - 1) / kRows), unsigned(B * H)), kRows, 0, stream>>>(q, k, v, out, lse, d);
  MOE_CUDA_LAUNCHED();
}

void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd, Stream stream) {
  if (B * S == 0) return;
  const Dims d = dims_of(B, S, H, Hkv, hd);
  float* delta = nullptr;
  MOE_CUDA_CHECK(cudaMallocAsync(&delta, sizeof(float) * B * H * S, stream));
  flash_delta<<<blocks_for(B * H * S), kThreads, 0, stream>>>(out, dout, delta, d);
  MOE_CUDA_LAUNCHED();
  MOE_CUDA_CHECK(cudaMemsetAsync(dk, 0, sizeof(float) * B * S * Hkv * hd, stream));
  MOE_CUDA_CHECK(cudaMemsetAsync(dv, 0, sizeof(float) * B * S * Hkv * hd, stream));
  const dim3 grid(unsigned((S + kRows - 1) / kRows), unsigned(B * H));
  flash_backward_kv<<<grid, kRows, 0, stream>>>(q, k, v, dout, lse, delta, dk, dv, d);
  MOE_CUDA_LAUNCHED();
  flash_backward_q<<<grid, kRows, 0, stream>>>(q, k, v, dout, lse, delta, dq, d);
  MOE_CUDA_LAUNCHED();
  cudaFreeAsync(delta, stream);
}

}  // namespace moe::cuda
