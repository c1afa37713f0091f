// Fused causal attention on tensor cores (bf16 operands, fp32 accumulation), FlashAttention-2's
// algorithm with WMMA 16x16x16 fragments: the scores of one 64 x 64 tile live in shared memory
// only, never in device memory. Used by attention.cu in bf16 mode for head dims 32, 64 and 128.
//
// Inputs are head-major ([BH, S, hd], bf16; kv heads already repeated per query head); outputs
// fp32 head-major. A block is 4 warps; each warp owns 16 rows of the block's 64-row tile.
//   flash_fwd:    one block per (head, 64 queries): online softmax over key tiles 0 .. diagonal;
//                 O [BH, S, hd] and lse [BH, S].
//   flash_bwd_kv: one block per (head, 64 keys): loops over the query tiles that see them and
//                 accumulates dK, dV (FlashAttention-2's outer loop over keys, no atomics).
//   flash_bwd_q:  one block per (head, 64 queries): dQ over key tiles 0 .. diagonal.
// delta [BH, S] = rowsum(dO * O), computed by the caller.
#pragma once
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>

namespace moe::cuda::flash {

using bf16 = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

constexpr int kTile = 64;      // rows of a query or key tile
constexpr int kThreads = 128;  // 4 warps x 16 rows
constexpr int kLdS = kTile + 4;  // row stride of fp32 score tiles in shared memory (padded against bank conflicts)
constexpr int kLdP = kTile + 8;  // row stride of bf16 probability tiles
constexpr float kMasked = -1e30f;

using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Rows r0 .. r0 + 64 of a [S, HD] bf16 matrix into a shared [64][HD] tile, zeros past row S.
template <int HD>
__device__ void load_tile(const bf16* m, int64_t r0, int64_t S, bf16* tile) {
  constexpr int kVec = HD / 8;  // 16-byte vectors per row
  for (int e = threadIdx.x; e < kTile * kVec; e += blockDim.x) {
    const int r = e / kVec, c = e % kVec;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < S) v = reinterpret_cast<const uint4*>(m + (r0 + r) * HD)[c];
    reinterpret_cast<uint4*>(tile + r * HD)[c] = v;
  }
}

// out[16 x 64] (row-major, ld kLdS) = A[16 x HD] B^T for B a [64][HD] tile: A rows times B rows.
template <int HD>
__device__ void rows_times_rows(const bf16* a, const bf16* b, float* out) {
  FragA fa[HD / 16];  // the warp's 16 rows, loaded once for the four column blocks
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) wmma::load_matrix_sync(fa[kk], a + kk * 16, HD);
#pragma unroll
  for (int j = 0; j < kTile / 16; ++j) {
    FragC acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      FragBCol fb;
      wmma::load_matrix_sync(fb, b + j * 16 * HD + kk * 16, HD);
      wmma::mma_sync(acc, fa[kk], fb, acc);
    }
    wmma::store_matrix_sync(out + j * 16, acc, kLdS, wmma::mem_row_major);
  }
}

// acc[j] += P[16 x 64] (row-major, ld kLdP) x M[64 x HD] (a shared tile), for the HD / 16 column blocks.
template <int HD>
__device__ void accumulate_p_times_tile(const bf16* p, const bf16* m, FragC* acc) {
#pragma unroll
  for (int kk = 0; kk < kTile / 16; ++kk) {
    FragA fa;
    wmma::load_matrix_sync(fa, p + kk * 16, kLdP);
#pragma unroll
    for (int j = 0; j < HD / 16; ++j) {
      FragBRow fb;
      wmma::load_matrix_sync(fb, m + kk * 16 * HD + j * 16, HD);
      wmma::mma_sync(acc[j], fa, fb, acc[j]);
    }
  }
}

// lse and delta of query rows q0 .. q0 + 64 (of the head starting at `head`) into shared memory.
__device__ inline void load_row_stats(const float* lse, const float* delta, int64_t head, int64_t q0, int64_t S,
                                      float* lse_s, float* delta_s) {
  if (threadIdx.x < kTile) {
    const int64_t q = q0 + threadIdx.x;
    lse_s[threadIdx.x] = q < S ? lse[head + q] : 0.0f;
    delta_s[threadIdx.x] = q < S ? delta[head + q] : 0.0f;
  }
}

// Element-wise work on a warp's 16 x 64 tile: lane pair (2i, 2i + 1) owns row i, the even / odd
// columns (the padded strides keep the pair's accesses off each other's banks).
struct LaneRow {
  int row, half;  // row within the warp's 16, column parity
  __device__ LaneRow() : row((threadIdx.x % 32) / 2), half(threadIdx.x % 2) {}
  __device__ int col(int t) const { return half + 2 * t; }  // t < 32
};

template <int HD>
constexpr size_t fwd_smem() {
  return 3 * kTile * HD * 2 + kTile * kLdS * 4 + kTile * kLdP * 2;
}

// Two passes over the key tiles: the first finds each row's max and sum of exponentials (online),
// the second turns the scores into normalized probabilities and accumulates O = P V in registers.
template <int HD>
__global__ void __launch_bounds__(kThreads) flash_fwd(const bf16* qh, const bf16* kh, const bf16* vh, float* oh,
                                                      float* lse, int64_t S, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ks = Qs + kTile * HD;
  bf16* Vs = Ks + kTile * HD;
  float* Ss = reinterpret_cast<float*>(Vs + kTile * HD);  // [64][kLdS] scores of the tile
  bf16* Ps = reinterpret_cast<bf16*>(Ss + kTile * kLdS);  // [64][kLdP] probabilities
  const int64_t bh = blockIdx.y, q0 = int64_t(blockIdx.x) * kTile, base = bh * S * HD;
  const int warp = threadIdx.x / 32, r0 = warp * 16;
  const LaneRow lr;
  const int64_t q = q0 + r0 + lr.row;  // this lane's query row
  float* srow = Ss + (r0 + lr.row) * kLdS;
  bf16* prow = Ps + (r0 + lr.row) * kLdP;
  load_tile<HD>(qh + base, q0, S, Qs);
  const int64_t kend = min(S, q0 + kTile);
  float m = kMasked, l = 0.0f;  // this lane's columns; the pair shares m
  for (int64_t k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();
    load_tile<HD>(kh + base, k0, S, Ks);
    __syncthreads();
    rows_times_rows<HD>(Qs + r0 * HD, Ks, Ss + r0 * kLdS);
    __syncwarp();
    float tmax = kMasked;
    for (int t = 0; t < 32; ++t) {
      const int64_t key = k0 + lr.col(t);
      if (key <= q && key < S) tmax = fmaxf(tmax, srow[lr.col(t)] * scale);
    }
    tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 1));
    const float m_new = fmaxf(m, tmax);
    float sum = 0.0f;
    for (int t = 0; t < 32; ++t) {
      const int64_t key = k0 + lr.col(t);
      if (key <= q && key < S) sum += __expf(srow[lr.col(t)] * scale - m_new);
    }
    l = l * __expf(m - m_new) + sum;
    m = m_new;
    __syncwarp();
  }
  const float row_lse = m + logf(l + __shfl_xor_sync(0xffffffffu, l, 1));
  FragC acc[HD / 16];
#pragma unroll
  for (int j = 0; j < HD / 16; ++j) wmma::fill_fragment(acc[j], 0.0f);
  for (int64_t k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();
    load_tile<HD>(kh + base, k0, S, Ks);
    load_tile<HD>(vh + base, k0, S, Vs);
    __syncthreads();
    rows_times_rows<HD>(Qs + r0 * HD, Ks, Ss + r0 * kLdS);
    __syncwarp();
    for (int t = 0; t < 32; ++t) {
      const int c = lr.col(t);
      const int64_t key = k0 + c;
      prow[c] = __float2bfloat16(key <= q && key < S ? __expf(srow[c] * scale - row_lse) : 0.0f);
    }
    __syncwarp();
    accumulate_p_times_tile<HD>(Ps + r0 * kLdP, Vs, acc);
  }
  __syncthreads();  // K / V free: they stage the output (16 x HD floats per warp)
  float* stage = reinterpret_cast<float*>(Ks) + r0 * HD;
#pragma unroll
  for (int j = 0; j < HD / 16; ++j) wmma::store_matrix_sync(stage + j * 16, acc[j], HD, wmma::mem_row_major);
  __syncwarp();
  const int lane = threadIdx.x % 32;
  for (int r = 0; r < 16 && q0 + r0 + r < S; ++r)
    for (int c = lane; c < HD; c += 32) oh[base + (q0 + r0 + r) * HD + c] = stage[r * HD + c];
  if (lr.half == 0 && q < S) lse[bh * S + q] = row_lse;
}

template <int HD>
constexpr size_t bwd_kv_smem() {
  return 4 * kTile * HD * 2 + 2 * kTile * kLdS * 4 + 2 * kTile * kLdP * 2 + 2 * kTile * 4;
}

// Stores 16 rows of accumulators (one warp's) through a shared [16][HD] staging area into rows
// row0 .. row0 + 16 of a [S, HD] fp32 matrix, skipping rows past S.
template <int HD>
__device__ void store_rows(FragC* acc, float* stage, float* out, int64_t row0, int64_t S) {
#pragma unroll
  for (int j = 0; j < HD / 16; ++j) wmma::store_matrix_sync(stage + j * 16, acc[j], HD, wmma::mem_row_major);
  __syncwarp();
  const int lane = threadIdx.x % 32;
  for (int r = 0; r < 16 && row0 + r < S; ++r)
    for (int c = lane; c < HD; c += 32) out[(row0 + r) * HD + c] = stage[r * HD + c];
  __syncwarp();
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_kv(const bf16* qh, const bf16* kh, const bf16* vh, const bf16* doh, const float* lse,
                 const float* delta, float* dkh, float* dvh, int64_t S, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kTile * HD;
  bf16* Qs = Vs + kTile * HD;
  bf16* Ds = Qs + kTile * HD;                               // dO tile
  float* St = reinterpret_cast<float*>(Ds + kTile * HD);  // [64 keys][kLdS] scores, transposed
  float* dPt = St + kTile * kLdS;                          // [64 keys][kLdS] dO . V, transposed
  bf16* Pt = reinterpret_cast<bf16*>(dPt + kTile * kLdS);  // [64 keys][kLdP] probabilities, transposed
  bf16* dSt = Pt + kTile * kLdP;                           // [64 keys][kLdP] score gradients, transposed
  float* lse_s = reinterpret_cast<float*>(dSt + kTile * kLdP);
  float* delta_s = lse_s + kTile;
  const int64_t bh = blockIdx.y, k0 = int64_t(blockIdx.x) * kTile, base = bh * S * HD;
  const int warp = threadIdx.x / 32, r0 = warp * 16;
  const LaneRow lr;
  load_tile<HD>(kh + base, k0, S, Ks);
  load_tile<HD>(vh + base, k0, S, Vs);
  FragC dk[HD / 16], dv[HD / 16];
#pragma unroll
  for (int j = 0; j < HD / 16; ++j) wmma::fill_fragment(dk[j], 0.0f), wmma::fill_fragment(dv[j], 0.0f);
  for (int64_t q0 = k0; q0 < S; q0 += kTile) {  // queries before k0 see none of these keys
    __syncthreads();
    load_tile<HD>(qh + base, q0, S, Qs);
    load_tile<HD>(doh + base, q0, S, Ds);
    load_row_stats(lse, delta, bh * S, q0, S, lse_s, delta_s);
    __syncthreads();
    rows_times_rows<HD>(Ks + r0 * HD, Qs, St + r0 * kLdS);   // S^T = K Q^T
    rows_times_rows<HD>(Vs + r0 * HD, Ds, dPt + r0 * kLdS);  // dP^T = V dO^T
    __syncwarp();
    {
      const int r = r0 + lr.row;
      const int64_t key = k0 + r;
      for (int t = 0; t < 32; ++t) {
        const int c = lr.col(t);
        const int64_t q = q0 + c;
        const bool seen = q < S && key < S && key <= q;
        const float p = seen ? __expf(St[r * kLdS + c] * scale - lse_s[c]) : 0.0f;
        Pt[r * kLdP + c] = __float2bfloat16(p);
        dSt[r * kLdP + c] = __float2bfloat16(seen ? scale * p * (dPt[r * kLdS + c] - delta_s[c]) : 0.0f);
      }
    }
    __syncwarp();
    accumulate_p_times_tile<HD>(Pt + r0 * kLdP, Ds, dv);   // dV += P^T dO
    accumulate_p_times_tile<HD>(dSt + r0 * kLdP, Qs, dk);  // dK += dS^T Q
  }
  __syncthreads();  // St / dPt free: they stage the outputs (16 x HD floats per warp fit in them)
  float* stage = St + r0 * HD;
  store_rows<HD>(dk, stage, dkh + base, k0 + r0, S);
  store_rows<HD>(dv, stage, dvh + base, k0 + r0, S);
}

template <int HD>
constexpr size_t bwd_q_smem() {
  return 4 * kTile * HD * 2 + 2 * kTile * kLdS * 4 + kTile * kLdP * 2 + 2 * kTile * 4;
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_q(const bf16* qh, const bf16* kh, const bf16* vh, const bf16* doh, const float* lse,
                const float* delta, float* dqh, int64_t S, float scale) {
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ds = Qs + kTile * HD;
  bf16* Ks = Ds + kTile * HD;
  bf16* Vs = Ks + kTile * HD;
  float* Ss = reinterpret_cast<float*>(Vs + kTile * HD);  // [64][kLdS]
  float* dPs = Ss + kTile * kLdS;                         // [64][kLdS]
  bf16* dSs = reinterpret_cast<bf16*>(dPs + kTile * kLdS);  // [64][kLdP]
  float* lse_s = reinterpret_cast<float*>(dSs + kTile * kLdP);
  float* delta_s = lse_s + kTile;
  const int64_t bh = blockIdx.y, q0 = int64_t(blockIdx.x) * kTile, base = bh * S * HD;
  const int warp = threadIdx.x / 32, r0 = warp * 16;
  const LaneRow lr;
  load_tile<HD>(qh + base, q0, S, Qs);
  load_tile<HD>(doh + base, q0, S, Ds);
  load_row_stats(lse, delta, bh * S, q0, S, lse_s, delta_s);
  FragC dq[HD / 16];
#pragma unroll
  for (int j = 0; j < HD / 16; ++j) wmma::fill_fragment(dq[j], 0.0f);
  const int64_t kend = min(S, q0 + kTile);
  for (int64_t k0 = 0; k0 < kend; k0 += kTile) {
    __syncthreads();
    load_tile<HD>(kh + base, k0, S, Ks);
    load_tile<HD>(vh + base, k0, S, Vs);
    __syncthreads();
    rows_times_rows<HD>(Qs + r0 * HD, Ks, Ss + r0 * kLdS);   // S = Q K^T
    rows_times_rows<HD>(Ds + r0 * HD, Vs, dPs + r0 * kLdS);  // dP = dO V^T
    __syncwarp();
    {
      const int r = r0 + lr.row;
      const int64_t q = q0 + r;
      const float l = lse_s[r], dl = delta_s[r];
      for (int t = 0; t < 32; ++t) {
        const int c = lr.col(t);
        const int64_t key = k0 + c;
        const bool seen = q < S && key < S && key <= q;
        const float p = seen ? __expf(Ss[r * kLdS + c] * scale - l) : 0.0f;
        dSs[r * kLdP + c] = __float2bfloat16(seen ? scale * p * (dPs[r * kLdS + c] - dl) : 0.0f);
      }
    }
    __syncwarp();
    accumulate_p_times_tile<HD>(dSs + r0 * kLdP, Ks, dq);  // dQ += dS K
  }
  __syncthreads();
  store_rows<HD>(dq, Ss + r0 * HD, dqh + base, q0 + r0, S);
}

}  // namespace moe::cuda::flash
