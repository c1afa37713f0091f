// Fused causal attention on tensor cores (bf16 operands, fp32 accumulation), FlashAttention-2's
// algorithm on mma.sync (warp_mma.cuh): the scores and probabilities of a tile live in registers
// only, never in shared or device memory; K / V (or Q / dO) tiles stream through two shared-memory
// stages filled by cp.async while the previous tile computes. Used by attention.cu in bf16 mode for
// head dims 32, 64 and 128.
//
// Inputs are head-major ([BH, S, hd], bf16; kv heads already repeated per query head); outputs
// fp32 head-major. A block is 4 warps; each warp owns 16 rows of the block's 64-row tile.
//   flash_fwd:    one block per (head, 64 queries): one pass over key tiles 0 .. diagonal with the
//                 online softmax (running max and sum per row, in the exp2 domain);
//                 O [BH, S, hd] and lse [BH, S] (natural log, as the CPU twin saves it).
//   flash_bwd_kv: one block per (head, 64 keys): loops over the query tiles that see them and
//                 accumulates dK, dV in registers (FlashAttention-2's outer loop over keys, no atomics).
//   flash_bwd_q:  one block per (head, 64 queries): dQ over key tiles 0 .. diagonal.
// delta [BH, S] = rowsum(dO * O), computed by the caller. The blocks of the longest rows start
// first (causal work grows with the query index).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/cuda/warp_mma.cuh"

namespace moe::cuda::flash {

using bf16 = __nv_bfloat16;

constexpr int kTile = 64;        // rows of a query or key tile
constexpr int kThreads = 128;    // 4 warps x 16 rows
constexpr float kMasked = -1e30f;  // a masked score (finite: no inf - inf)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int HD>
__host__ __device__ constexpr int padded() {
  return HD + 8;  // shared tile row stride (warp_mma.cuh)
}

// Tile `it` of K and V (rows it * 64 ..) into stage it % 2 of `stages` (K, then V) and commits the
// group: the pipeline of flash_fwd and flash_bwd_q.
template <int HD>
__device__ __forceinline__ void load_kv_stage(const bf16* k, const bf16* v, int64_t it, int64_t S, bf16* stages) {
  constexpr int kElems = kTile * padded<HD>();
  bf16* st = stages + (it & 1) * 2 * kElems;
  mma::async_rows<HD, kTile, kThreads>(k, it * kTile, S, st);
  mma::async_rows<HD, kTile, kThreads>(v, it * kTile, S, st + kElems);
  mma::cp_async_commit();
}

// The top of iteration `it` of a two-stage pipeline: starts the copies of tile it + 1 (load(it + 1),
// committed by it), waits for tile it's, and makes them visible to the whole block.
template <class Load>
__device__ __forceinline__ void next_tile(int64_t it, int64_t tiles, const Load& load) {
  if (it + 1 < tiles) {
    load(it + 1);
    mma::cp_async_wait<1>();
  } else {
    mma::cp_async_wait<0>();
  }
  __syncthreads();
}

template <int HD>
constexpr size_t fwd_smem() {
  return size_t(5) * kTile * padded<HD>() * sizeof(bf16);  // Q, two stages of K and V
}

template <int HD>
__global__ void __launch_bounds__(kThreads) flash_fwd(const bf16* qh, const bf16* kh, const bf16* vh, float* oh,
                                                      float* lse, int64_t S, float scale) {
  constexpr int LD = padded<HD>(), kElems = kTile * LD;
  MOE_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* stages = Qs + kElems;  // stage i: K at stages + 2 i kElems, V after it
  const int64_t bh = blockIdx.y, q0 = int64_t(gridDim.x - 1 - blockIdx.x) * kTile, base = bh * S * HD;
  const int warp = threadIdx.x / 32;
  const int64_t row0 = q0 + warp * 16;  // the warp's first query
  const int64_t tiles = (min(S, q0 + kTile) + kTile - 1) / kTile;
  auto load_kv = [&](int64_t it) { load_kv_stage<HD>(kh + base, vh + base, it, S, stages); };
  mma::async_rows<HD, kTile, kThreads>(qh + base, q0, S, Qs);
  load_kv(0);  // Q travels in the first group

  const float sl2 = scale * kLog2e;  // scores -> the exp2 domain
  float o[HD / 8][4] = {};
  float m[2] = {kMasked, kMasked}, l[2] = {0.0f, 0.0f};  // rows g and g + 8; l: this lane's columns
  uint32_t qf[HD / 16][4];  // the warp's Q rows as A fragments, loaded with the first tile
  for (int64_t it = 0; it < tiles; ++it) {
    next_tile(it, tiles, load_kv);
    if (it == 0) mma::load_a_rows<HD>(Qs + warp * 16 * LD, qf);
    const bf16* Ks = stages + (it & 1) * 2 * kElems;
    const bf16* Vs = Ks + kElems;
    const int64_t k0 = it * kTile;
    float s[kTile / 8][4];
    mma::frags_times_rows<HD, kTile>(qf, Ks, s);
    const bool edge = k0 + kTile - 1 > row0 || k0 + kTile > S;  // some key is past some row's query or past S
    float mx[2] = {kMasked, kMasked};
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[j][e] * sl2;
        if (edge) {
          const int64_t key = k0 + mma::acc_col(j, e), q = row0 + mma::acc_row(e);
          if (key > q || key >= S) x = kMasked;
        }
        s[j][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
    float corr[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {  // the four lanes of a row group hold its 64 columns
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float m_new = fmaxf(m[h], mx[h]);
      corr[h] = exp2f(m[h] - m_new);
      m[h] = m_new;
      l[h] *= corr[h];
    }
#pragma unroll
    for (int j = 0; j < HD / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[j][e] *= corr[e >> 1];
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = exp2f(s[j][e] - m[e >> 1]);
        l[e >> 1] += p;
        s[j][e] = p;
      }
    uint32_t pa[kTile / 16][4];
    mma::accumulators_to_a<kTile>(s, pa);
    mma::a_times_tile<kTile, HD>(pa, Vs, o);  // O += P V
    __syncthreads();  // the next iteration refills this stage
  }
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
    inv[h] = 1.0f / l[h];
  }
#pragma unroll
  for (int j = 0; j < HD / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[j][e] *= inv[e >> 1];
  mma::store_accumulators<HD>(o, 1.0f, oh + base, row0, S);
  if (threadIdx.x % 4 == 0)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t q = row0 + mma::acc_row(2 * h);
      if (q < S) lse[bh * S + q] = (m[h] + log2f(l[h])) * kLn2;
    }
}

// Query rows per tile of flash_bwd_kv: 32 at head dim 128 keeps dK, dV, S^T and dP^T in registers.
template <int HD>
__host__ __device__ constexpr int kv_query_rows() {
  return HD <= 64 ? 64 : 32;
}

template <int HD>
constexpr size_t bwd_kv_smem() {
  constexpr int QN = kv_query_rows<HD>();
  return (size_t(2) * kTile + 4 * QN) * padded<HD>() * sizeof(bf16) + 4 * QN * sizeof(float);
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_kv(const bf16* qh, const bf16* kh, const bf16* vh, const bf16* doh, const float* lse,
                 const float* delta, float* dkh, float* dvh, int64_t S, float scale) {
  constexpr int LD = padded<HD>(), QN = kv_query_rows<HD>(), kQElems = QN * LD;
  MOE_DYNAMIC_SMEM(smem);
  bf16* Ks = reinterpret_cast<bf16*>(smem);
  bf16* Vs = Ks + kTile * LD;
  bf16* stages = Vs + kTile * LD;  // stage i: Q at stages + 2 i kQElems, dO after it
  float* stats = reinterpret_cast<float*>(stages + 4 * kQElems);  // stage i: lse at stats + 2 i QN, delta after it
  const int64_t bh = blockIdx.y, k0 = int64_t(blockIdx.x) * kTile, base = bh * S * HD;
  const int warp = threadIdx.x / 32;
  const int64_t key0 = k0 + warp * 16;  // the warp's first key
  const int64_t tiles = (S - k0 + QN - 1) / QN;  // queries before k0 see none of these keys
  auto load_q = [&](int64_t it) {
    const int64_t q0 = k0 + it * QN;
    bf16* st = stages + (it & 1) * 2 * kQElems;
    float* sf = stats + (it & 1) * 2 * QN;
    mma::async_rows<HD, QN, kThreads>(qh + base, q0, S, st);
    mma::async_rows<HD, QN, kThreads>(doh + base, q0, S, st + kQElems);
    mma::async_floats<QN>(lse + bh * S, q0, S, sf);
    mma::async_floats<QN>(delta + bh * S, q0, S, sf + QN);
    mma::cp_async_commit();
  };
  mma::async_rows<HD, kTile, kThreads>(kh + base, k0, S, Ks);
  mma::async_rows<HD, kTile, kThreads>(vh + base, k0, S, Vs);
  load_q(0);  // K and V travel in the first group

  const float sl2 = scale * kLog2e;
  float dk[HD / 8][4] = {}, dv[HD / 8][4] = {};
  for (int64_t it = 0; it < tiles; ++it) {
    next_tile(it, tiles, load_q);
    const bf16* Qs = stages + (it & 1) * 2 * kQElems;
    const bf16* Ds = Qs + kQElems;
    const float* lse_s = stats + (it & 1) * 2 * QN;
    const float* delta_s = lse_s + QN;
    const int64_t q0 = k0 + it * QN;
    float p[QN / 8][4], ds[QN / 8][4];  // transposed: rows keys, columns queries
    mma::rows_times_rows<HD, QN>(Ks + warp * 16 * LD, Qs, p);    // S^T = K Q^T
    mma::rows_times_rows<HD, QN>(Vs + warp * 16 * LD, Ds, ds);   // dP^T = V dO^T
    const bool edge = q0 < key0 + 15 || q0 + QN > S;  // some query before some key, or past S
#pragma unroll
    for (int j = 0; j < QN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = mma::acc_col(j, e);
        float x = exp2f(p[j][e] * sl2 - lse_s[c] * kLog2e);
        if (edge) {
          const int64_t q = q0 + c, key = key0 + mma::acc_row(e);
          if (key > q || q >= S) x = 0.0f;
        }
        p[j][e] = x;
        ds[j][e] = x * (ds[j][e] - delta_s[c]);  // dS^T / scale
      }
    uint32_t a[QN / 16][4];
    mma::accumulators_to_a<QN>(p, a);
    mma::a_times_tile<QN, HD>(a, Ds, dv);  // dV += P^T dO
    mma::accumulators_to_a<QN>(ds, a);
    mma::a_times_tile<QN, HD>(a, Qs, dk);  // dK += dS^T Q (scale applied at the store)
    __syncthreads();  // the next iteration refills this stage
  }
  mma::store_accumulators<HD>(dk, scale, dkh + base, key0, S);
  mma::store_accumulators<HD>(dv, 1.0f, dvh + base, key0, S);
}

template <int HD>
constexpr size_t bwd_q_smem() {
  return size_t(6) * kTile * padded<HD>() * sizeof(bf16);  // Q, dO, two stages of K and V
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_q(const bf16* qh, const bf16* kh, const bf16* vh, const bf16* doh, const float* lse,
                const float* delta, float* dqh, int64_t S, float scale) {
  constexpr int LD = padded<HD>(), kElems = kTile * LD;
  MOE_DYNAMIC_SMEM(smem);
  bf16* Qs = reinterpret_cast<bf16*>(smem);
  bf16* Ds = Qs + kElems;
  bf16* stages = Ds + kElems;  // stage i: K at stages + 2 i kElems, V after it
  const int64_t bh = blockIdx.y, q0 = int64_t(gridDim.x - 1 - blockIdx.x) * kTile, base = bh * S * HD;
  const int warp = threadIdx.x / 32;
  const int64_t row0 = q0 + warp * 16;
  const int64_t tiles = (min(S, q0 + kTile) + kTile - 1) / kTile;
  auto load_kv = [&](int64_t it) { load_kv_stage<HD>(kh + base, vh + base, it, S, stages); };
  mma::async_rows<HD, kTile, kThreads>(qh + base, q0, S, Qs);
  mma::async_rows<HD, kTile, kThreads>(doh + base, q0, S, Ds);
  load_kv(0);  // Q and dO travel in the first group

  const float sl2 = scale * kLog2e;
  float lse2[2], dl[2];  // rows g and g + 8 of the warp
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t q = row0 + mma::acc_row(2 * h);
    lse2[h] = q < S ? lse[bh * S + q] * kLog2e : 0.0f;
    dl[h] = q < S ? delta[bh * S + q] : 0.0f;
  }
  float dq[HD / 8][4] = {};
  for (int64_t it = 0; it < tiles; ++it) {
    next_tile(it, tiles, load_kv);
    const bf16* Ks = stages + (it & 1) * 2 * kElems;
    const bf16* Vs = Ks + kElems;
    const int64_t k0 = it * kTile;
    float p[kTile / 8][4], ds[kTile / 8][4];
    mma::rows_times_rows<HD, kTile>(Qs + warp * 16 * LD, Ks, p);   // S = Q K^T
    mma::rows_times_rows<HD, kTile>(Ds + warp * 16 * LD, Vs, ds);  // dP = dO V^T
    const bool edge = k0 + kTile - 1 > row0 || k0 + kTile > S;
#pragma unroll
    for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = exp2f(p[j][e] * sl2 - lse2[e >> 1]);
        if (edge) {
          const int64_t key = k0 + mma::acc_col(j, e), q = row0 + mma::acc_row(e);
          if (key > q || key >= S) x = 0.0f;
        }
        ds[j][e] = x * (ds[j][e] - dl[e >> 1]);  // dS / scale
      }
    uint32_t a[kTile / 16][4];
    mma::accumulators_to_a<kTile>(ds, a);
    mma::a_times_tile<kTile, HD>(a, Ks, dq);  // dQ += dS K (scale applied at the store)
    __syncthreads();  // the next iteration refills this stage
  }
  mma::store_accumulators<HD>(dq, scale, dqh + base, row0, S);
}

}  // namespace moe::cuda::flash
