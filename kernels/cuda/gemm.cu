// GEMMs on the GPU through cuBLAS (twins of kernels/cpu/gemm.cpp), row-major as kernels/gemm.h:
// a row-major X is the column-major X^T, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T.
// The expert GEMMs are grouped GEMMs: one cublasGemmGroupedBatchedEx call runs every expert's
// problem (each its own row count), or one GEMM per expert where that measures faster
// (choose_grouped_impl).
#include <cuda_bf16.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
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

// The per-group pointer arrays of one grouped call in device memory, written by kernels that take
// the pointers as launch arguments: nothing on the host is read after the call returns, so the
// call neither synchronises the stream nor copies from pageable memory (which may synchronise), and
// the GPU stays busy while the host queues the next work. Freed in stream order.
constexpr int kPointersPerLaunch = 128;  // 3 KB of kernel arguments (the limit is 4 KB)

struct PointerBatch {
  const void* a[kPointersPerLaunch];
  const void* b[kPointersPerLaunch];
  void* c[kPointersPerLaunch];
};

__global__ void write_pointers_kernel(PointerBatch batch, int n, const void** a, const void** b, void** c) {
  const int i = int(threadIdx.x);
  if (i < n) {
    a[i] = batch.a[i];
    b[i] = batch.b[i];
    c[i] = batch.c[i];
  }
}

struct PointerArrays {
  const void** a = nullptr;
  const void** b = nullptr;
  void** c = nullptr;
  Stream stream;
  PointerArrays(const std::vector<const void*>& ha, const std::vector<const void*>& hb, const std::vector<void*>& hc,
                Stream s)
      : stream(s) {
    const size_t n = ha.size();
    a = static_cast<decltype(a)>(stream_alloc(sizeof(void*) * n, s));
    b = static_cast<decltype(b)>(stream_alloc(sizeof(void*) * n, s));
    c = static_cast<decltype(c)>(stream_alloc(sizeof(void*) * n, s));
    for (size_t first = 0; first < n; first += kPointersPerLaunch) {
      const int count = int(std::min<size_t>(kPointersPerLaunch, n - first));
      PointerBatch batch{};
      std::copy_n(ha.begin() + long(first), count, batch.a);
      std::copy_n(hb.begin() + long(first), count, batch.b);
      std::copy_n(hc.begin() + long(first), count, batch.c);
      MOE_LAUNCH(1, kPointersPerLaunch, 0, s, write_pointers_kernel)(batch, count, a + first, b + first, c + first);
      MOE_CUDA_LAUNCHED();
    }
  }
  ~PointerArrays() {
    stream_free(a, stream);
    stream_free(b, stream);
    stream_free(c, stream);
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

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
                          int64_t lda, int64_t stride_a, const void* B, int64_t ldb, int64_t stride_b, float beta,
                          void* C, int64_t ldc, int64_t stride_c, int64_t batch, bool in_bf16, bool out_bf16,
                          Stream stream) {
  if (M == 0 || N == 0 || batch == 0) return;
  const cudaDataType_t in = in_bf16 ? CUDA_R_16BF : CUDA_R_32F, out = out_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  MOE_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle_for(stream), op(trans_b), op(trans_a), int(N), int(M), int(K),
                                              &alpha, B, in, int(ldb), stride_b, A, in, int(lda), stride_a, &beta, C,
                                              out, int(ldc), stride_c, int(batch), CUBLAS_COMPUTE_32F,
                                              CUBLAS_GEMM_DEFAULT));
}

namespace {

// The problems of one grouped call (column-major view), with operand element types: fp32 or bf16
// inputs, fp32 or bf16 output, fp32 accumulation.
struct GroupedCall {
  cudaDataType_t in_type, out_type;
  size_t in_bytes, out_bytes;  // bytes per input / output element
  std::vector<cublasOperation_t> ta, tb;
  std::vector<int> m, n, k, la, lb, lc, size;
  std::vector<float> alpha, beta;
  std::vector<const void*> pa, pb;
  std::vector<void*> pc;

  explicit GroupedCall(bool bf16, bool c_bf16 = false)
      : in_type(bf16 ? CUDA_R_16BF : CUDA_R_32F),
        out_type(c_bf16 ? CUDA_R_16BF : CUDA_R_32F),
        in_bytes(bf16 ? 2 : 4),
        out_bytes(c_bf16 ? 2 : 4) {}
  const void* at(const void* base, int64_t elements) const {
    return static_cast<const char*>(base) + size_t(elements) * in_bytes;
  }
  void* out_at(void* base, int64_t elements) const { return static_cast<char*>(base) + size_t(elements) * out_bytes; }
  void add(cublasOperation_t opa, cublasOperation_t opb, int64_t M, int64_t N, int64_t K, float al, const void* A,
           int64_t lda, const void* B, int64_t ldb, float be, void* C, int64_t ldc) {
    ta.push_back(opa), tb.push_back(opb);
    m.push_back(int(M)), n.push_back(int(N)), k.push_back(int(K));
    pa.push_back(A), la.push_back(int(lda));
    pb.push_back(B), lb.push_back(int(ldb));
    pc.push_back(C), lc.push_back(int(ldc));
    alpha.push_back(al), beta.push_back(be), size.push_back(1);
  }
  // One cublasGemmGroupedBatchedEx call (kGroupedCall; where cuBLAS does not offer that type
  // combination for grouped calls, the per-group form instead), or one cublasGemmEx per problem.
  void run(GroupedImpl impl, Stream stream) {
    if (pa.empty()) return;
    cublasHandle_t h = handle_for(stream);
    cublasStatus_t st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (impl == GroupedImpl::kGroupedCall) {
      PointerArrays arrays(pa, pb, pc, stream);
      st = cublasGemmGroupedBatchedEx(h, ta.data(), tb.data(), m.data(), n.data(), k.data(), alpha.data(), arrays.a,
                                      in_type, la.data(), arrays.b, in_type, lb.data(), beta.data(), arrays.c,
                                      out_type, lc.data(), int(pa.size()), size.data(), CUBLAS_COMPUTE_32F);
    }
    if (st != CUBLAS_STATUS_NOT_SUPPORTED) {
      MOE_CUBLAS_CHECK(st);
      return;
    }
    for (size_t i = 0; i < pa.size(); ++i)
      MOE_CUBLAS_CHECK(cublasGemmEx(h, ta[i], tb[i], m[i], n[i], k[i], &alpha[i], pa[i], in_type, la[i], pb[i], in_type,
                                    lb[i], &beta[i], pc[i], out_type, lc[i], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
};

// Row-major C_g = alpha A_g op(B_{g % W}) + beta C_g over row groups (see kernels/gemm.h).
void grouped_rows(bool bf16, int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K,
                  float alpha, const void* A, int64_t lda, const void* B, int64_t stride_b, int64_t ldb, float beta,
                  void* C, int64_t ldc, bool c_bf16, GroupedImpl impl, Stream stream) {
  GroupedCall call(bf16, c_bf16);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t rows = offsets[g + 1] - offsets[g];
    if (rows == 0) continue;
    // column-major: C_g^T [N, rows] = op(B_w)^T [N, K] x A_g^T [K, rows]
    call.add(op(trans_b), CUBLAS_OP_N, N, rows, K, alpha, call.at(B, (g % W) * stride_b), ldb,
             call.at(A, offsets[g] * lda), lda, beta, call.out_at(C, offsets[g] * ldc), ldc);
  }
  call.run(impl, stream);
}

// C_w += sum over g = w (mod W), in increasing g, of A_g^T B_g (see kernels/gemm.h). Groups that
// add into the same C_w go to different calls (one per block of W), so no call races on an output.
void grouped_weight_grad(bool bf16, int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const void* A,
                         int64_t lda, const void* B, int64_t ldb, float* C, int64_t stride_c, GroupedImpl impl,
                         Stream stream) {
  for (int64_t r0 = 0; r0 < G; r0 += W) {
    GroupedCall call(bf16);
    for (int64_t g = r0; g < std::min(G, r0 + W); ++g) {
      const int64_t rows = offsets[g + 1] - offsets[g];
      if (rows == 0) continue;
      // column-major: C_w^T [N, M] += B_g^T [N, rows] x A_g [rows, M]
      call.add(CUBLAS_OP_N, CUBLAS_OP_T, N, M, rows, 1.0f, call.at(B, offsets[g] * ldb), ldb,
               call.at(A, offsets[g] * lda), lda, 1.0f, C + (g % W) * stride_c, N);
    }
    call.run(impl, stream);
  }
}

}  // namespace

void gemm_grouped_rows(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t stride_b, int64_t ldb, float beta,
                       float* C, int64_t ldc, GroupedImpl impl, Stream stream) {
  grouped_rows(false, G, W, offsets, trans_b, N, K, alpha, A, lda, B, stride_b, ldb, beta, C, ldc, false, impl, stream);
}

void gemm_grouped_weight_grad(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const float* A,
                              int64_t lda, const float* B, int64_t ldb, float* C, int64_t stride_c, GroupedImpl impl,
                              Stream stream) {
  grouped_weight_grad(false, G, W, offsets, M, N, A, lda, B, ldb, C, stride_c, impl, stream);
}

void gemm_grouped_rows_bf16(int64_t G, int64_t W, const int64_t* offsets, bool trans_b, int64_t N, int64_t K,
                            float alpha, const void* A, int64_t lda, const void* B, int64_t stride_b, int64_t ldb,
                            float beta, void* C, int64_t ldc, bool c_is_bf16, GroupedImpl impl, Stream stream) {
  grouped_rows(true, G, W, offsets, trans_b, N, K, alpha, A, lda, B, stride_b, ldb, beta, C, ldc, c_is_bf16, impl,
               stream);
}

void gemm_grouped_weight_grad_bf16(int64_t G, int64_t W, const int64_t* offsets, int64_t M, int64_t N, const void* A,
                                   int64_t lda, const void* B, int64_t ldb, float* C, int64_t stride_c,
                                   GroupedImpl impl, Stream stream) {
  grouped_weight_grad(true, G, W, offsets, M, N, A, lda, B, ldb, C, stride_c, impl, stream);
}

GroupedChoice choose_grouped_impl(int64_t G, int64_t rows, int64_t N, int64_t K, bool bf16) {
  GroupedChoice choice;
  if (G <= 0 || rows <= 0) return choice;
  std::vector<int64_t> off(size_t(G + 1));
  for (int64_t g = 0; g <= G; ++g) off[size_t(g)] = rows * g / G;
  void *x = random_device(rows * K, bf16, 1), *w = random_device(G * N * K, bf16, 2),
       *dy = random_device(rows * N, bf16, 3);
  float* y = static_cast<float*>(device_alloc(sizeof(float) * size_t(rows * N)));
  float* dw = static_cast<float*>(device_alloc(sizeof(float) * size_t(G * N * K)));
  zero_device(dw, sizeof(float) * size_t(G * N * K));
  const double gflop = 2.0 * double(rows) * double(N) * double(K) / 1e9;
  for (GroupedImpl impl : {GroupedImpl::kGroupedCall, GroupedImpl::kPerGroup}) {
    const int i = impl == GroupedImpl::kGroupedCall ? 0 : 1;
    choice.rows_tflops[i] = gflop / median_ms([&] {
      grouped_rows(bf16, G, G, off.data(), true, N, K, 1.0f, x, K, w, N * K, K, 0.0f, y, N, false, impl, nullptr);
    });
    choice.weight_grad_tflops[i] = gflop / median_ms([&] {
      grouped_weight_grad(bf16, G, G, off.data(), N, K, dy, N, x, K, dw, N * K, impl, nullptr);
    });
  }
  choice.rows = choice.rows_tflops[1] > choice.rows_tflops[0] ? GroupedImpl::kPerGroup : GroupedImpl::kGroupedCall;
  choice.weight_grad =
      choice.weight_grad_tflops[1] > choice.weight_grad_tflops[0] ? GroupedImpl::kPerGroup : GroupedImpl::kGroupedCall;
  for (void* p : {x, w, dy, static_cast<void*>(y), static_cast<void*>(dw)}) device_free(p);
  return choice;
}

double gemm_peak_tflops(bool bf16, int64_t n) {
  void *a = random_device(n * n, bf16, 21), *b = random_device(n * n, bf16, 22);
  void* c = device_alloc(size_t(n * n) * (bf16 ? 2 : 4));
  const double ms = median_ms(
      [&] {
        if (bf16)
          gemm_bf16(false, true, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, true);
        else
          gemm(false, true, n, n, n, 1.0f, static_cast<const float*>(a), n, static_cast<const float*>(b), n, 0.0f,
               static_cast<float*>(c), n);
      },
      5);
  for (void* p : {a, b, c}) device_free(p);
  return 2.0 * double(n) * double(n) * double(n) / (ms / 1000.0) / 1e12;
}

}  // namespace moe::cuda
