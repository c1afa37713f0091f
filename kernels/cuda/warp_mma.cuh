// Warp-level tensor-core building blocks on PTX (sm_80+): mma.sync m16n8k16 with bf16 operands and
// fp32 accumulators, ldmatrix fragment loads from shared memory, cp.async copies global -> shared.
// The fused attention kernels (flash_attention.cuh) are written with them, so that the scores and
// probabilities of a tile stay in registers (FlashAttention-2's layout trick: an accumulator
// fragment of S = Q K^T is, packed to bf16, the A fragment of P V).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16"), lane = 4 g + t:
//   A (16 x 16, row-major), 4 registers of 2 bf16: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same
//     cols), a2 (row g, cols 2t+8, 2t+9), a3 (row g+8, cols 2t+8, 2t+9);
//   B (16 x 8, k x n), 2 registers: b0 (k 2t, 2t+1; n g), b1 (k 2t+8, 2t+9; n g);
//   C (16 x 8, fp32), 4 floats: c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, same cols).
// ldmatrix.x4: lane l gives the address of row l % 8 of 8 x 8 matrix l / 8 (16 bytes); lane l gets
// register i = elements (l / 4, 2 (l % 4) .. +1) of matrix i, or with .trans of its transpose.
//
// Tiles in shared memory are row-major bf16 with a row stride of the width + 8 elements: rows start
// on 16-byte boundaries (cp.async, ldmatrix) and 8 consecutive rows fall on distinct bank quads.
//
// The PTX primitives (cp_async*, ldsm_x4*, mma_bf16) are in warp_mma_ptx.cuh; a translation unit
// that defines MOE_CUDA_EMULATION supplies its own (tests/emulation/cuda_emulation.h, the CPU).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#ifndef MOE_CUDA_EMULATION
#include "kernels/cuda/warp_mma_ptx.cuh"
// A kernel's dynamic shared memory as a byte array named `name` (the emulation has its own).
#define MOE_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
#endif

namespace moe::cuda::mma {

using bf16 = __nv_bfloat16;

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low 16 bits
  uint32_t u;
  memcpy(&u, &h, sizeof u);
  return u;
}

// Rows r0 .. r0 + R of a [S, W] bf16 matrix in global memory -> a [R][W + 8] shared tile with
// cp.async (the whole block takes part), zero rows past S. Committed by the caller.
template <int W, int R, int kThreads>
__device__ __forceinline__ void async_rows(const bf16* m, int64_t r0, int64_t S, bf16* tile) {
  constexpr int kVec = W / 8;  // 16-byte vectors per row
  for (int e = threadIdx.x; e < R * kVec; e += kThreads) {
    const int r = e / kVec, c = e % kVec;
    const bool valid = r0 + r < S;
    cp_async16(tile + r * (W + 8) + c * 8, m + (valid ? r0 + r : 0) * W + c * 8, valid);
  }
}

// Elements r0 .. r0 + R of a float vector of length S -> shared, zeros past S (threads 0 .. R - 1).
template <int R>
__device__ __forceinline__ void async_floats(const float* x, int64_t r0, int64_t S, float* dst) {
  if (threadIdx.x < R) {
    const bool valid = r0 + threadIdx.x < S;
    cp_async4(dst + threadIdx.x, x + (valid ? r0 + threadIdx.x : 0), valid);
  }
}

// The A fragments of the warp's 16 rows of a [.][K + 8] shared tile (a points at its first row),
// fragment kc covering columns 16 kc .. 16 kc + 15: for a left operand used against many tiles.
template <int K>
__device__ __forceinline__ void load_a_rows(const bf16* a, uint32_t (&fa)[K / 16][4]) {
  constexpr int LD = K + 8;
  const int lane = threadIdx.x % 32, i = lane / 8, r = lane % 8;
#pragma unroll
  for (int kc = 0; kc < K / 16; ++kc) ldsm_x4(fa[kc], a + (r + 8 * (i & 1)) * LD + kc * 16 + 8 * (i >> 1));
}

// acc[N / 8][4] = A B^T for A 16 rows in A fragments (load_a_rows) and B the N rows of a
// [N][K + 8] shared tile: row i of A against row j of B, the dot product over K. acc[j][.] is the
// C fragment of columns 8 j .. 8 j + 7.
template <int K, int N>
__device__ __forceinline__ void frags_times_rows(const uint32_t (&fa)[K / 16][4], const bf16* b,
                                                 float (&acc)[N / 8][4]) {
  constexpr int LD = K + 8;
  const int lane = threadIdx.x % 32, i = lane / 8, r = lane % 8;
#pragma unroll
  for (int j = 0; j < N / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
#pragma unroll
  for (int kc = 0; kc < K / 16; ++kc) {
#pragma unroll
    for (int jp = 0; jp < N / 16; ++jp) {  // two n tiles (16 rows of B) per ldmatrix
      uint32_t fb[4];
      ldsm_x4(fb, b + (jp * 16 + r + 8 * (i >> 1)) * LD + kc * 16 + 8 * (i & 1));
      mma_bf16(acc[2 * jp], fa[kc], fb[0], fb[1]);
      mma_bf16(acc[2 * jp + 1], fa[kc], fb[2], fb[3]);
    }
  }
}

// The same with A the warp's 16 rows of a [.][K + 8] shared tile (a points at its first row).
template <int K, int N>
__device__ __forceinline__ void rows_times_rows(const bf16* a, const bf16* b, float (&acc)[N / 8][4]) {
  uint32_t fa[K / 16][4];
  load_a_rows<K>(a, fa);
  frags_times_rows<K, N>(fa, b, acc);
}

// C fragments of a 16 x N fp32 tile -> A fragments (bf16) of the same tile as the left operand of
// a product over its N columns: fragment kc covers columns 16 kc .. 16 kc + 15.
template <int N>
__device__ __forceinline__ void accumulators_to_a(const float (&c)[N / 8][4], uint32_t (&a)[N / 16][4]) {
#pragma unroll
  for (int kc = 0; kc < N / 16; ++kc) {
    a[kc][0] = pack_bf16(c[2 * kc][0], c[2 * kc][1]);
    a[kc][1] = pack_bf16(c[2 * kc][2], c[2 * kc][3]);
    a[kc][2] = pack_bf16(c[2 * kc + 1][0], c[2 * kc + 1][1]);
    a[kc][3] = pack_bf16(c[2 * kc + 1][2], c[2 * kc + 1][3]);
  }
}

// acc[W / 8][4] += P M for P a 16 x N tile in A fragments (registers) and M the N rows of a
// [N][W + 8] shared tile (N x W, the product's k dimension running down its rows).
template <int N, int W>
__device__ __forceinline__ void a_times_tile(const uint32_t (&p)[N / 16][4], const bf16* m, float (&acc)[W / 8][4]) {
  constexpr int LD = W + 8;
  const int lane = threadIdx.x % 32, i = lane / 8, r = lane % 8;
#pragma unroll
  for (int kc = 0; kc < N / 16; ++kc) {
#pragma unroll
    for (int np = 0; np < W / 16; ++np) {  // two n tiles (16 columns of M) per ldmatrix
      uint32_t fb[4];
      ldsm_x4_trans(fb, m + (kc * 16 + r + 8 * (i & 1)) * LD + np * 16 + 8 * (i >> 1));
      mma_bf16(acc[2 * np], p[kc], fb[0], fb[1]);
      mma_bf16(acc[2 * np + 1], p[kc], fb[2], fb[3]);
    }
  }
}

// Coordinates of accumulator element acc[j][e] within the warp's 16 x N tile.
__device__ __forceinline__ int acc_row(int e) { return (threadIdx.x % 32) / 4 + 8 * (e >> 1); }
__device__ __forceinline__ int acc_col(int j, int e) { return 8 * j + 2 * (threadIdx.x % 4) + (e & 1); }

// Rows row0 .. row0 + 16 of a [S, W] fp32 matrix in global memory = scale * acc (the warp's 16 x W
// accumulators), rows past S skipped.
template <int W>
__device__ __forceinline__ void store_accumulators(const float (&acc)[W / 8][4], float scale, float* out, int64_t row0,
                                                   int64_t S) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + acc_row(2 * h);
    if (row >= S) continue;
#pragma unroll
    for (int j = 0; j < W / 8; ++j)
      *reinterpret_cast<float2*>(out + row * W + acc_col(j, 0)) =
          make_float2(scale * acc[j][2 * h], scale * acc[j][2 * h + 1]);
  }
}

}  // namespace moe::cuda::mma
