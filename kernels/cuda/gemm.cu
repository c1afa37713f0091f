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

namespace {

// The problems of one grouped call (column-major view), with operand element types: fp32 or bf16
// inputs, fp32 output, fp32 accumulation.
struct GroupedCall {
  cudaDataType_t in_type;
  size_t in_bytes;  // bytes per input element
  std::vector<cublasOperation_t> ta, tb;
  std::vector<int> m, n, k, la, lb, lc, size;
  std::vector<float> alpha, beta;
  std::vector<const void*> pa, pb;
  std::vector<void*> pc;

  explicit GroupedCall(bool bf16) : in_type(bf16 ? CUDA_R_16BF : CUDA_R_32F), in_bytes(bf16 ? 2 : 4) {}
  const void* at(const void* base, int64_t elements) const {
    return static_cast<const char*>(base) + size_t(elements) * in_bytes;
  }
  void add(cublasOperation_t opa, cublasOperation_t opb, int64_t M, int64_t N, int64_t K, float al, const void* A,
           int64_t lda, const void* B, int64_t ldb, float be, float* C, int64_t ldc) {
    ta.push_back(opa), tb.push_back(opb);
    m.push_back(int(M)), n.push_back(int(N)), k.push_back(int(K));
    pa.push_back(A), la.push_back(int(lda));
    pb.push_back(B), lb.push_back(int(ldb));
    pc.push_back(C), lc.push_back(int(ldc));
    alpha.push_back(al), beta.push_back(be), size.push_back(1);
  }
  // One cublasGemmGroupedBatchedEx call; where cuBLAS does not offer that type combination for
  // grouped calls, one cublasGemmEx per problem instead (same results).
  void run(Stream stream) {
    if (pa.empty()) return;
    cublasHandle_t h = handle_for(stream);
    cublasStatus_t st;
    {
      PointerArrays arrays(pa, pb, pc, stream);
      st = cublasGemmGroupedBatchedEx(h, ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(), arrays.a,
                                      in_type, la.data(), arrays.b, in_type, lb.data(), beta.data(), arrays.c,
                                      CUDA_R_32F, lc.data(), int(pa.size()), size.data(), CUBLAS_COMPUTE_32F);
    }
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) {
      MOE_CUBLAS_CHECK(st);
      return;
    }
    for (size_t i = 0; i < pa.size(); ++i)
      MOE_CUBLAS_CHECK(cublasGemmEx(h, ta[i], tb[i], m[i], n[i], k[i], &alpha[i], pa[i], in_type, la[i], pb[i], in_type,
                                    lb[i], &beta[i], pc[i], CUDA_R_32F, lc[i], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
};

// Row-major C_g = alpha A_g op(B_{g % W}) + beta C_g over row groups (see kernels/gemm.h).
void grouped_rows(bool bf16, int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K,
                  float alpha, const void* A, int64_t lda, const void* B, int64_t stride_b, int64_t ldb, float beta,
                  float* C, int64_t ldc, Stream stream) {
  GroupedCall call(bf16);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;
    // column-major: C_g^T [N, rows] = op(B_w)^T [N, K] x A_g^T [K, rows]
    call.add(op(trans_b), CUBLAS_OP_N, N, rows, K, alpha, call.at(B, (g % W) * stride_b), ldb,
             call.at(A, offsets[g] * lda), lda, beta, C + offsets[g] * ldc, ldc);
  }
  call.run(stream);
}

// C_w += sum over g = w (mod W), in increasing g, of A_g^T B_g (see kernels/gemm.h). Groups that
// add into the same C_w go to different calls (one per block of W), so no call races on an output.
void grouped_weight_grad(bool bf16, int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const void* A,
                         int64_t lda, const void* B, int64_t ldb, float* C, int64_t stride_c, Stream stream) {
  for (int64_t r0 = 0; r0 < G; r0 += W) {
    GroupedCall call(bf16);
    for (int64_t g = r0; g < std::min(G, r0 + W); ++g) {
      const int64_t rows = offsets[g + 1] - offsets[g];
      if (rows == 0) continue;
      // column-major: C_w^T [N, M] += B_g^T [N, rows] x A_g [rows, M]
      call.add(CUBLAS_OP_N, CUBLAS_OP_T, N, M, rows, 1.0f, call.at(B, offsets[g] * ldb), ldb,
               call.at(A, offsets[g] * lda), lda, 1.0f, C + (g % W) * stride_c, N);
    }
    call.run(stream);
  }
}

}  // namespace

void gemm_grouped_rows(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta,
                       float* C, int64_t ldc, Stream stream) {
  grouped_rows(false, G, W, offsets, trans_b, N, K, alpha, A, lda, B, stride_b, ldb, beta, C, ldc, stream);
}

void gemm_grouped_weight_grad(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float* C, int64_t stride_c, Stream stream) {
  grouped_weight_grad(false, G, W, offsets, M, N, A, lda, B, ldb, C, stride_c, stream);
}

void gemm_grouped_rows_bf16(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K,
                            float alpha, const void* A, int64_t lda, const void* B, int64_t stride_b, int64_t ldb,
                            float beta, float* C, int64_t ldc, Stream stream) {
  grouped_rows(true, G, W, offsets, trans_b, N, K, alpha, A, lda, B, stride_b, ldb, beta, C, ldc, stream);
}

void gemm_grouped_weight_grad_bf16(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const void* A,
                                   int64_t lda, const void* B, int64_t ldb, float* C, int64_t stride_c, Stream stream) {
  grouped_weight_grad(true, G, W, offsets, M, N, A, lda, B, ldb, C, stride_c, stream);
}

}  // namespace moe::cuda
