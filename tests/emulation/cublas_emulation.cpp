// The cuBLAS calls moe-train makes, on the CPU for the CUDA emulation (docs/testing.md): column-major
// GEMMs with fp32 or bf16 operands and fp32 accumulation, computed by OpenBLAS on fp32 copies of
// the operands (kernels/cpu/gemm.cpp) and rounded to bf16 where the output is bf16. Every operand
// must lie inside device memory of the emulated runtime, as it must on a GPU (the pointer arrays
// of grouped calls included); anything else fails with CUBLAS_STATUS_INVALID_VALUE and a message.
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <vector>

#include "emulation/emulated_memory.h"
#include "kernels/gemm.h"

struct cublasContext {
  cudaStream_t stream = nullptr;
};

namespace moe::emu {
namespace {

size_t element_bytes(cudaDataType t) { return t == CUDA_R_16BF ? 2 : 4; }
bool supported(cudaDataType t) { return t == CUDA_R_16BF || t == CUDA_R_32F; }

// The elements a column-major rows x cols operand with leading dimension ld spans.
size_t span(int rows, int cols, int ld) { return rows == 0 || cols == 0 ? 0 : size_t(ld) * size_t(cols - 1) + rows; }

std::vector<float> to_float(const void* p, cudaDataType t, size_t n) {
  std::vector<float> out(n);
  if (t == CUDA_R_32F) {
    if (n) std::memcpy(out.data(), p, n * 4);
  } else {
    const auto* h = static_cast<const __nv_bfloat16*>(p);
    for (size_t i = 0; i < n; ++i) out[i] = __bfloat162float(h[i]);
  }
  return out;
}

// C = alpha op(A) op(B) + beta C, column-major (cuBLAS's convention). The row-major CPU GEMM sees a
// column-major X as X^T, so it computes C^T = op(B)^T op(A)^T.
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const void* A,
          cudaDataType at, int lda, const void* B, cudaDataType bt, int ldb, float beta, void* C, cudaDataType ct,
          int ldc) {
  if (!supported(at) || !supported(bt) || !supported(ct)) throw std::runtime_error("unsupported data type");
  if (m == 0 || n == 0) return;
  const bool trans_a = ta != CUBLAS_OP_N, trans_b = tb != CUBLAS_OP_N;
  const size_t a_span = span(trans_a ? k : m, trans_a ? m : k, lda), b_span = span(trans_b ? n : k, trans_b ? k : n, ldb),
               c_span = span(m, n, ldc);
  require_device(A, a_span * element_bytes(at), "cuBLAS operand A");
  require_device(B, b_span * element_bytes(bt), "cuBLAS operand B");
  require_device(C, c_span * element_bytes(ct), "cuBLAS operand C");
  const std::vector<float> a = to_float(A, at, a_span), b = to_float(B, bt, b_span);
  std::vector<float> c(c_span, 0.0f);
  if (beta != 0.0f) c = to_float(C, ct, c_span);  // beta 0: C is not read (it may hold NaN)
  moe::gemm(trans_b, trans_a, n, m, k, alpha, b.data(), ldb, a.data(), lda, beta, c.data(), ldc);
  for (int j = 0; j < n; ++j)  // only the m x n entries: the padding between columns stays
    for (int i = 0; i < m; ++i) {
      const size_t idx = size_t(j) * size_t(ldc) + size_t(i);
      if (ct == CUDA_R_32F)
        static_cast<float*>(C)[idx] = c[idx];
      else
        static_cast<__nv_bfloat16*>(C)[idx] = __float2bfloat16(c[idx]);
    }
}

template <class F>
cublasStatus_t guarded(const char* call, F&& f) {
  try {
    f();
    return CUBLAS_STATUS_SUCCESS;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulated %s: %s\n", call, e.what());
    return CUBLAS_STATUS_INVALID_VALUE;
  }
}

float scalar(const void* p) { return *static_cast<const float*>(p); }  // fp32 compute: fp32 scalars

}  // namespace
}  // namespace moe::emu

using moe::emu::guarded;

cublasStatus_t cublasCreate_v2(cublasHandle_t* handle) {
  *handle = new cublasContext;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
const char* cublasGetStatusString(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "emulated cuBLAS error (details on stderr)";
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                              float* C, int ldc) {
  return guarded("cublasSgemm", [&] {
    moe::emu::gemm(ta, tb, m, n, k, *alpha, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, *beta, C, CUDA_R_32F, ldc);
  });
}

cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void* alpha, const void* A, cudaDataType at, int lda, const void* B, cudaDataType bt,
                            int ldb, const void* beta, void* C, cudaDataType ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t) {
  return guarded("cublasGemmEx", [&] {
    if (compute != CUBLAS_COMPUTE_32F) throw std::runtime_error("only CUBLAS_COMPUTE_32F is emulated");
    moe::emu::gemm(ta, tb, m, n, k, moe::emu::scalar(alpha), A, at, lda, B, bt, ldb, moe::emu::scalar(beta), C, ct,
                   ldc);
  });
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void* alpha, const void* A, cudaDataType at, int lda,
                                          long long int stride_a, const void* B, cudaDataType bt, int ldb,
                                          long long int stride_b, const void* beta, void* C, cudaDataType ct, int ldc,
                                          long long int stride_c, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t) {
  using moe::emu::element_bytes;
  return guarded("cublasGemmStridedBatchedEx", [&] {
    if (compute != CUBLAS_COMPUTE_32F) throw std::runtime_error("only CUBLAS_COMPUTE_32F is emulated");
    for (int i = 0; i < batch; ++i)
      moe::emu::gemm(ta, tb, m, n, k, moe::emu::scalar(alpha),
                     static_cast<const char*>(A) + size_t(i) * size_t(stride_a) * element_bytes(at), at, lda,
                     static_cast<const char*>(B) + size_t(i) * size_t(stride_b) * element_bytes(bt), bt, ldb,
                     moe::emu::scalar(beta), static_cast<char*>(C) + size_t(i) * size_t(stride_c) * element_bytes(ct),
                     ct, ldc);
  });
}

cublasStatus_t cublasGemmGroupedBatchedEx(cublasHandle_t, const cublasOperation_t transa_array[],
                                          const cublasOperation_t transb_array[], const int m_array[],
                                          const int n_array[], const int k_array[], const void* alpha_array,
                                          const void* const Aarray[], cudaDataType_t at, const int lda_array[],
                                          const void* const Barray[], cudaDataType_t bt, const int ldb_array[],
                                          const void* beta_array, void* const Carray[], cudaDataType_t ct,
                                          const int ldc_array[], int group_count, const int group_size[],
                                          cublasComputeType_t compute) {
  return guarded("cublasGemmGroupedBatchedEx", [&] {
    if (compute != CUBLAS_COMPUTE_32F) throw std::runtime_error("only CUBLAS_COMPUTE_32F is emulated");
    size_t problems = 0;
    for (int g = 0; g < group_count; ++g) problems += size_t(group_size[g]);
    // the pointer arrays are device arrays (the sizes, scalars and operations are host arrays)
    moe::emu::require_device(Aarray, problems * sizeof(void*), "grouped GEMM pointer array A");
    moe::emu::require_device(Barray, problems * sizeof(void*), "grouped GEMM pointer array B");
    moe::emu::require_device(Carray, problems * sizeof(void*), "grouped GEMM pointer array C");
    const float* alpha = static_cast<const float*>(alpha_array);
    const float* beta = static_cast<const float*>(beta_array);
    size_t p = 0;
    for (int g = 0; g < group_count; ++g)
      for (int i = 0; i < group_size[g]; ++i, ++p)
        moe::emu::gemm(transa_array[g], transb_array[g], m_array[g], n_array[g], k_array[g], alpha[g], Aarray[p], at,
                       lda_array[g], Barray[p], bt, ldb_array[g], beta[g], Carray[p], ct, ldc_array[g]);
  });
}
