// GEMM (row-major): C[M,N] = alpha * op(A) * op(B) + beta * C, op = transpose when trans_*.
// CPU: OpenBLAS sgemm. Blocking; multi-threaded inside unless called from an OpenMP parallel region.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// Grouped GEMM over row groups: for g in [0, G), rows [offsets[g], offsets[g+1]) of A and C:
//   C_g[Mg, N] = alpha * A_g[Mg, K] * op(B_w) + beta * C_g,  w = g % W,  B_w = B + w * stride_b,
// op(B_w) = B_w^T ([N, K] stored) when trans_b, else B_w ([K, N] stored). W weight matrices serve
// G = R x W groups (R blocks of W experts, e.g. one block per source rank after dispatch; W = G
// when every group has its own weight). Used for experts' forward (x W^T) and input gradients
// (dy W). Empty groups are skipped.
void gemm_grouped_rows(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta, float* C,
                       int64_t ldc);

// Grouped weight gradient: for each weight w, C_w[M, N] += sum over groups g with g % W == w (in
// increasing g) of A_g^T * B_g, A_g = rows [offsets[g], offsets[g+1]) of A ([rows, M]) and B_g the
// same rows of B ([rows, N]); C_w = C + w * stride_c (row-major, leading dim N). Accumulates.
void gemm_grouped_weight_grad(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float* C, int64_t stride_c);

// ---- CUDA twin (kernels/cuda/gemm.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream = nullptr);
// bf16 inputs (A, B: __nv_bfloat16), fp32 accumulation; C fp32, or bf16 when c_is_bf16.
void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
               const void* B, int64_t ldb, float beta, void* C, int64_t ldc, bool c_is_bf16, Stream stream = nullptr);
// Strided batched: C_i = alpha op(A_i) op(B_i) + beta C_i with X_i = X + i * stride_x elements for
// i < batch. A and B both fp32 or both bf16 (in_bf16), C fp32 or bf16 (out_bf16); fp32 accumulation.
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                          int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta,
                          void* C, int64_t ldc, int64_t stride_c, int64_t batch, bool in_bf16, bool out_bf16,
                          Stream stream = nullptr);
// How the grouped expert GEMMs run: one cublasGemmGroupedBatchedEx call for all groups, or one
// cuBLAS GEMM per group. Same results; which is faster depends on the shapes and the GPU (on an
// H100, a few large experts run faster one GEMM each: cuBLAS's grouped kernels trail its tuned
// single GEMMs there), so the GPU model measures both (choose_grouped_impl) and keeps the faster.
enum class GroupedImpl { kGroupedCall, kPerGroup };
// offsets are host arrays.
void gemm_grouped_rows(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta,
                       float* C, int64_t ldc, GroupedImpl impl = GroupedImpl::kGroupedCall, Stream stream = nullptr);
void gemm_grouped_weight_grad(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float* C, int64_t stride_c,
                              GroupedImpl impl = GroupedImpl::kGroupedCall, Stream stream = nullptr);
// The same with bf16 A and B (__nv_bfloat16) and fp32 accumulation (bf16 training); C fp32, or
// bf16 when c_is_bf16 (the weight gradient's C is always fp32).
void gemm_grouped_rows_bf16(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K,
                            float alpha, const void* A, int64_t lda, const void* B, int64_t stride_b, int64_t ldb,
                            float beta, void* C, int64_t ldc, bool c_is_bf16 = false,
                            GroupedImpl impl = GroupedImpl::kGroupedCall, Stream stream = nullptr);
void gemm_grouped_weight_grad_bf16(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const void* A,
                                   int64_t lda, const void* B, int64_t ldb, float* C, int64_t stride_c,
                                   GroupedImpl impl = GroupedImpl::kGroupedCall, Stream stream = nullptr);

// The faster implementation for the experts' GEMMs of one shape, measured on scratch buffers of
// random values: `rows` token copies spread evenly over G experts of weight [N, K] (x W^T, the form
// the forward and the input gradients use) and the weight gradient (dy^T x). TFLOP/s of each
// (median of 3 timed runs after a warm-up) are kept for reports.
struct GroupedChoice {
  GroupedImpl rows = GroupedImpl::kGroupedCall, weight_grad = GroupedImpl::kGroupedCall;
  double rows_tflops[2] = {0, 0}, weight_grad_tflops[2] = {0, 0};  // [kGroupedCall, kPerGroup]
};
GroupedChoice choose_grouped_impl(int64_t G, int64_t rows, int64_t N, int64_t K, bool bf16);

// The GEMM peak the MFU figures are measured against: TFLOP/s of an n^3 cuBLAS GEMM on random
// values (bf16 inputs and output with fp32 accumulation, or fp32), median of 5 after a warm-up.
double gemm_peak_tflops(bool bf16, int64_t n = 8192);
}  // namespace cuda

}  // namespace moe
