// GEMM (row-major): C[M,N] = alpha * op(A) * op(B) + beta * C, op = transpose when trans_*.
// CPU: OpenBLAS sgemm. Blocking; multi-threaded inside unless called from an OpenMP parallel region.
#pragma once
#include <cstdint>

namespace moe {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Grouped GEMM over row groups: for g in [0, G), rows [offsets[g], offsets[g+1]) of A and C:
//   C_g[Mg, N] = alpha * A_g[Mg, K] * op(B_g) + beta * C_g,  B_g = B + g * stride_b,
// op(B_g) = B_g^T ([N, K] stored) when trans_b, else B_g ([K, N] stored). Used for experts' forward
// (x W^T) and input gradients (dy W). Empty groups are skipped.
void gemm_grouped_rows(int64_t G, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta, float* C,
                       int64_t ldc);

// Grouped weight gradient: for each group g, C_g[M, N] += A_g^T * B_g with A_g = rows
// [offsets[g], offsets[g+1]) of A ([rows, M]) and B_g the same rows of B ([rows, N]);
// C_g = C + g * stride_c (row-major, leading dim N). Accumulates (parameter gradients use +=).
void gemm_grouped_weight_grad(int64_t G, const int64_t* offsets, int64_t M, int64_t N, const float* A, int64_t lda,
                              const float* B, int64_t ldb, float* C, int64_t stride_c);

}  // namespace moe
