// GEMM on the CPU through OpenBLAS. Grouped forms run small groups in parallel (one thread each,
// OpenBLAS single-threaded inside a parallel region) and large groups one after another with all
// threads, so fine-grained experts do not pay a thread fork per tiny GEMM.
#include "kernels/gemm.h"

#include <cblas.h>
#include <omp.h>

namespace moe {

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha,
              A, lda, B, ldb, beta, C, ldc);
}

// Below this many flops per group, groups run concurrently on one thread each.
static constexpr double kSmallGroupFlops = 64.0 * 1024 * 1024;

static bool run_groups_in_parallel(int64_t G, const int64_t* offsets, double flops_per_row) {
  if (omp_get_max_threads() <= 1 || G <= 1) return false;
  double total = 0;
  for (int64_t g = 0; g < G; ++g) total += flops_per_row * (offsets[g + 1] - offsets[g]);
  return total / G < kSmallGroupFlops;
}

void gemm_grouped_rows(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta, float* C,
                       int64_t ldc) {
  auto one = [&](int64_t g) {
    int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) return;
    gemm(false, trans_b, rows, N, K, alpha, A + offsets[g] * lda, lda, B + (g % W) * stride_b, ldb, beta,
         C + offsets[g] * ldc, ldc);
  };
  if (run_groups_in_parallel(G, offsets, 2.0 * N * K)) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t g = 0; g < G; ++g) one(g);
  } else {
    for (int64_t g = 0; g < G; ++g) one(g);
  }
}

void gemm_grouped_weight_grad(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float* C, int64_t stride_c) {
  // Groups sharing a weight accumulate one after another (no race, fixed order); weights in parallel.
  auto one = [&](int64_t w) {
    for (int64_t g = w; g < G; g += W) {
      int64_t rows = offsets[g + 1] - offsets[g];
      if (rows == 0) continue;
      gemm(true, false, M, N, rows, 1.0f, A + offsets[g] * lda, lda, B + offsets[g] * ldb, ldb, 1.0f,
           C + w * stride_c, N);
    }
  };
  if (run_groups_in_parallel(G, offsets, 2.0 * M * N * double(G) / double(W))) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t w = 0; w < W; ++w) one(w);
  } else {
    for (int64_t w = 0; w < W; ++w) one(w);
  }
}

}  // namespace moe
