// GEMMs on the GPU through cuBLAS (twins of kernels/cpu/gemm.cpp), row-major as kernels/gemm.h:
// a row-major X is the column-major X^T, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T.
// The expert GEMMs are grouped GEMMs: one cublasGemmGroupedBatchedEx call runs every expert's
// problem (each its own row count) rather than one launch per expert.
#include <cuda_bf16.h>

#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/gemm.h"

namespace moe::cuda {
namespace {

cublasHandle_t handle_for(Stream stream) {
  thread_local cublasHandle_t handle = nullptr;
  if (!handle) MOE_CUBLAS_CHECK(cublasCreate(&handle));
  MOE_CUBLAS_CHECK(cublasSetStream(handle, stream));
  return handle;
}

cublasOperation_t op(bool t) { return t ? CUBLAS_OP_T : CUBLAS_OP_N; }

// Device copies of the per-group pointer arrays of one grouped call, freed in stream order.
struct PointerArrays {
  const void** a = nullptr;
  const void** b = nullptr;
  void** c = nullptr;
  Stream stream;
  PointerArrays(const std::vector<const void*>& ha, const std::vector<const void*>& hb, const std::vector<void*>& hc,
                Stream s)
      : stream(s) {
    const size_t n = ha.size();
    MOE_CUDA_CHECK(cudaMallocAsync(&a, sizeof(void*) * n, s));
    MOE_CUDA_CHECK(cudaMallocAsync(&b, sizeof(void*) * n, s));
    MOE_CUDA_CHECK(cudaMallocAsync(&c, sizeof(void*) * n, s));
    MOE_CUDA_CHECK(cudaMemcpyAsync(a, ha.data(), sizeof(void*) * n, cudaMemcpyHostToDevice, s));
    MOE_CUDA_CHECK(cudaMemcpyAsync(b, hb.data(), sizeof(void*) * n, cudaMemcpyHostToDevice, s));
    MOE_CUDA_CHECK(cudaMemcpyAsync(c, hc.data(), sizeof(void*) * n, cudaMemcpyHostToDevice, s));
  }
  ~PointerArrays() {
    cudaStreamSynchronize(stream);  // the host arrays of the call are read asynchronously
    cudaFreeAsync(a, stream);
    cudaFreeAsync(b, stream);
    cudaFreeAsync(c, stream);
  }
};

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
          const float* B, int64_t ldb, float beta, float* C, int64_t ldc, Stream stream) {
  if (M == 0 || N == 0) return;
  MOE_CUBLAS_CHECK(cublasSgemm(handle_for(stream), op(trans_b), op(trans_a), int(N), int(M), int(K), &alpha, B,
                               int(ldb), A, int(lda), &beta, C, int(ldc)));
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A, int64_t lda,
               const void* B, int64_t ldb, float beta, void* C, int64_t ldc, bool c_is_bf16, Stream stream) {
  if (M == 0 || N == 0) return;
  MOE_CUBLAS_CHECK(cublasGemmEx(handle_for(stream), op(trans_b), op(trans_a), int(N), int(M), int(K), &alpha, B,
                                CUDA_R_16BF, int(ldb), A, CUDA_R_16BF, int(lda), &beta, C,
                                c_is_bf16 ? CUDA_R_16BF : CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F,
                                CUBLAS_GEMM_DEFAULT));
}

void gemm_grouped_rows(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta,
                       float* C, int64_t ldc, Stream stream) {
  std::vector<cublasOperation_t> ta, tb;
  std::vector<int> m, n, k, la, lb, lc, size;
  std::vector<float> alphas, betas;
  std::vector<const void*> pa, pb;
  std::vector<void*> pc;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;
    // column-major: C_g^T [N, rows] = op(B_w)^T [N, K] x A_g^T [K, rows]
    ta.push_back(op(trans_b));
    tb.push_back(CUBLAS_OP_N);
    m.push_back(int(N));
    n.push_back(int(rows));
    k.push_back(int(K));
    pa.push_back(B + (g % W) * stride_b);
    la.push_back(int(ldb));
    pb.push_back(A + offsets[g] * lda);
    lb.push_back(int(lda));
    pc.push_back(C + offsets[g] * ldc);
    lc.push_back(int(ldc));
    alphas.push_back(alpha);
    betas.push_back(beta);
    size.push_back(1);
  }
  if (pa.empty()) return;
  PointerArrays arrays(pa, pb, pc, stream);
  MOE_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(handle_for(stream), ta.data(), tb.data(), m.data(), n.data(), k.data(),
                                              alphas.data(), arrays.a, CUDA_R_32F, la.data(), arrays.b, CUDA_R_32F,
                                              lb.data(), betas.data(), arrays.c, CUDA_R_32F, lc.data(),
                                              int(pa.size()), size.data(), CUBLAS_COMPUTE_32F));
}

void gemm_grouped_weight_grad(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float* C, int64_t stride_c, Stream stream) {
  // Groups g = r W + w for r = 0.. add into the same C_w: one grouped call per block r keeps the
  // problems of a call on distinct outputs and the additions in increasing g.
  for (int64_t r0 = 0; r0 < G; r0 += W) {
    std::vector<cublasOperation_t> ta, tb;
    std::vector<int> m, n, k, la, lb, lc, size;
    std::vector<float> ones;
    std::vector<const void*> pa, pb;
    std::vector<void*> pc;
    for (int64_t g = r0; g < std::min(G, r0 + W); ++g) {
      const int64_t rows = offsets[g + 1] - offsets[g];
      if (rows == 0) continue;
      // column-major: C_w^T [N, M] += B_g^T [N, rows] x A_g [rows, M]
      ta.push_back(CUBLAS_OP_N);
      tb.push_back(CUBLAS_OP_T);
      m.push_back(int(N));
      n.push_back(int(M));
      k.push_back(int(rows));
      pa.push_back(B + offsets[g] * ldb);
      la.push_back(int(ldb));
      pb.push_back(A + offsets[g] * lda);
      lb.push_back(int(lda));
      pc.push_back(C + (g % W) * stride_c);
      lc.push_back(int(N));
      ones.push_back(1.0f);
      size.push_back(1);
    }
    if (pa.empty()) continue;
    PointerArrays arrays(pa, pb, pc, stream);
    MOE_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(handle_for(stream), ta.data(), tb.data(), m.data(), n.data(),
                                                k.data(), ones.data(), arrays.a, CUDA_R_32F, la.data(), arrays.b,
                                                CUDA_R_32F, lb.data(), ones.data(), arrays.c, CUDA_R_32F, lc.data(),
                                                int(pa.size()), size.data(), CUBLAS_COMPUTE_32F));
  }
}

}  // namespace moe::cuda
