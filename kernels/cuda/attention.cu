// Causal grouped-query attention on the GPU (kernels/attention.h names the two implementations).
// kBlocked: blocked like the CPU twin (kernels/cpu/attention.cpp):
// query blocks of kBlock rows against the keys they can see (0 .. the block's last row), every
// matmul one cuBLAS strided-batched GEMM over all B x H heads (tensor cores; bf16 operands with fp32
// accumulation in bf16 mode), the softmax in a kernel of its own. At most a [B*H, kBlock, S] tile of
// scores exists at a time, never the S x S matrix; the forward saves logsumexp [B, H, S] and the
// backward recomputes the probabilities from it, FlashAttention-2's math block by block:
//   dV += P^T dO,  dP = dO V^T,  dS = scale * P * (dP - delta),  dQ = dS K,  dK += dS^T Q,
// with delta = rowsum(dO * O). q, k, v are first copied head-major ([B, H, S, hd], each kv head
// repeated for the query heads that share it, bf16 in bf16 mode); the repeated kv heads'
// gradients are summed back. Layouts as kernels/attention.h.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/flash_attention.cuh"
#include "kernels/cuda/device.h"
#include "kernels/gemm.h"

namespace moe::cuda {
namespace {

constexpr int64_t kBlock = 256;  // query rows per block
using bf16 = __nv_bfloat16;

template <class T>
__device__ T to(float x);
template <>
__device__ float to<float>(float x) {
  return x;
}
template <>
__device__ bf16 to<bf16>(float x) {
  return __float2bfloat16(x);
}

// y [B, H, S, hd] (type T) from x [B, S, Hs, hd]: head h reads head h / (H / Hs) of x.
template <class T>
__global__ void to_heads(const float* x, T* y, int64_t B, int64_t S, int64_t H, int64_t Hs, int64_t hd) {
  const int64_t n = B * H * S * hd, rep = H / Hs;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % hd, s = (e / hd) % S, h = (e / (hd * S)) % H, b = e / (hd * S * H);
    y[e] = to<T>(x[((b * S + s) * Hs + h / rep) * hd + c]);
  }
}

// x [B, S, Hs, hd] = for each head g of x, the sum of heads g * rep .. g * rep + rep - 1 of
// y [B, H, S, hd] (rep = H / Hs; rep 1 is a plain transpose).
__global__ void from_heads_sum(const float* y, float* x, int64_t B, int64_t S, int64_t H, int64_t Hs, int64_t hd) {
  const int64_t n = B * S * Hs * hd, rep = H / Hs;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = e % hd, g = (e / hd) % Hs, s = (e / (hd * Hs)) % S, b = e / (hd * Hs * S);
    float sum = 0;
    for (int64_t r = 0; r < rep; ++r) sum += y[((b * H + g * rep + r) * S + s) * hd + c];
    x[e] = sum;
  }
}

// delta[b, h, i] = dout_i . out_i over [B, S, H, hd] (the softmax backward's row term)
__global__ void row_delta(const float* out, const float* dout, float* delta, int64_t B, int64_t S, int64_t H,
                          int64_t hd) {
  const int64_t n = B * H * S;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bh = e / S, i = e % S, b = bh / H, h = bh % H;
    const float *o = out + ((b * S + i) * H + h) * hd, *d = dout + ((b * S + i) * H + h) * hd;
    float s = 0;
    for (int64_t c = 0; c < hd; ++c) s += d[c] * o[c];
    delta[e] = s;
  }
}

// The rows of one query block: row r of head bh is query position s0 + r % rows, its scores at
// sc + (bh * kb + r) * ld (kb rows per head's tile), columns 0 .. s0 + rows, of which it sees
// 0 .. s0 + r.
struct BlockRows {
  int64_t BH, rows, s0, S, ld, kb;
  float scale;
  __device__ int64_t count() const { return BH * rows; }
  __device__ int64_t bh(int64_t w) const { return w / rows; }
  __device__ int64_t i(int64_t w) const { return w % rows; }
  __device__ int64_t at(int64_t w) const { return (bh(w) * kb + i(w)) * ld; }
  __device__ int64_t cols() const { return s0 + rows; }
  __device__ int64_t seen(int64_t w) const { return s0 + i(w) + 1; }
};

__device__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Probabilities of a block's rows, one warp per row: p = exp(scale * sc - lse) where the row sees,
// 0 elsewhere. The forward (kSoftmax) computes each row's logsumexp and saves it in lse [BH, S];
// the backward reads it there.
template <class T, bool kSoftmax>
__global__ void probs_rows(const float* sc, T* p, float* lse, BlockRows d) {
  const int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (w >= d.count()) return;
  const float* row = sc + d.at(w);
  T* prow = p + d.at(w);
  const int64_t seen = d.seen(w), cols = d.cols(), at = d.bh(w) * d.S + d.s0 + d.i(w);
  float l;
  if (kSoftmax) {
    float m = -FLT_MAX;
    for (int64_t j = lane; j < seen; j += 32) m = fmaxf(m, row[j] * d.scale);
    m = warp_max(m);
    float sum = 0;
    for (int64_t j = lane; j < seen; j += 32) sum += expf(row[j] * d.scale - m);
    l = m + logf(warp_sum(sum));
    if (lane == 0) lse[at] = l;
  } else {
    l = lse[at];
  }
  for (int64_t j = lane; j < cols; j += 32) prow[j] = to<T>(j < seen ? expf(row[j] * d.scale - l) : 0.0f);
}

// Backward: ds = scale * p * (dp - delta), p recomputed in fp32 from the scores; written over p.
template <class T>
__global__ void dscores_rows(const float* sc, const float* dp, T* ds, const float* lse, const float* delta,
                             BlockRows d) {
  const int64_t w = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (w >= d.count()) return;
  const int64_t a = d.at(w), seen = d.seen(w), cols = d.cols(), q = d.bh(w) * d.S + d.s0 + d.i(w);
  const float l = lse[q], dl = delta[q];
  for (int64_t j = lane; j < cols; j += 32)
    ds[a + j] = to<T>(j < seen ? d.scale * expf(sc[a + j] * d.scale - l) * (dp[a + j] - dl) : 0.0f);
}

unsigned warps_blocks(int64_t warps) { return blocks_for(warps * 32); }

template <class T>
T* alloc(int64_t n, Stream stream) {
  return static_cast<T*>(stream_alloc(sizeof(T) * size_t(std::max<int64_t>(n, 1)), stream));
}

struct Shape {
  int64_t B, S, H, Hkv, hd, BH, kb, ld;  // kb: rows per block, ld: score row stride
  float scale;
};

Shape shape_of(int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t hd) {
  MOE_CHECK(Hkv > 0 && H % Hkv == 0, "CUDA attention: n_heads " << H << " is not a multiple of n_kv_heads " << Hkv);
  const int64_t kb = std::min(kBlock, S), ld = (S + 7) / 8 * 8;  // 16-byte aligned rows
  return Shape{B, S, H, Hkv, hd, B * H, kb, ld, 1.0f / sqrtf(float(hd))};
}

// C[M, N] = op(A) op(B) for every head (batch B*H), A, B of type T, C fp32.
template <class T>
void head_gemm(const Shape& s, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
               int64_t sa, const T* Bm, int64_t ldb, int64_t sb, float beta, float* C, int64_t ldc, int64_t sc,
               Stream stream) {
  gemm_strided_batched(ta, tb, M, N, K, 1.0f, A, lda, sa, Bm, ldb, sb, beta, C, ldc, sc, s.BH,
                       sizeof(T) == 2, false, stream);
}

// The fused tensor-core kernels (flash_attention.cuh) take bf16 operands and head dims 32 / 64 / 128.
bool fused_supports(int64_t hd) { return hd == 32 || hd == 64 || hd == 128; }

template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  MOE_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

template <int HD>
void fused_forward_hd(const Shape& s, const bf16* qh, const bf16* kh, const bf16* vh, float* oh, float* lse,
                      Stream stream) {
  const size_t smem = flash::fwd_smem<HD>();
  allow_smem(flash::flash_fwd<HD>, smem);
  const dim3 grid(unsigned((s.S + flash::kTile - 1) / flash::kTile), unsigned(s.BH));
  MOE_LAUNCH(grid, flash::kThreads, smem, stream, flash::flash_fwd<HD>)(qh, kh, vh, oh, lse, s.S, s.scale);
  MOE_CUDA_LAUNCHED();
}

template <int HD>
void fused_backward_hd(const Shape& s, const bf16* qh, const bf16* kh, const bf16* vh, const bf16* doh,
                       const float* lse, const float* delta, float* dqh, float* dkh, float* dvh, Stream stream) {
  const dim3 grid(unsigned((s.S + flash::kTile - 1) / flash::kTile), unsigned(s.BH));
  const size_t kv_smem = flash::bwd_kv_smem<HD>(), q_smem = flash::bwd_q_smem<HD>();
  allow_smem(flash::flash_bwd_kv<HD>, kv_smem);
  allow_smem(flash::flash_bwd_q<HD>, q_smem);
  MOE_LAUNCH(grid, flash::kThreads, kv_smem, stream, flash::flash_bwd_kv<HD>)
  (qh, kh, vh, doh, lse, delta, dkh, dvh, s.S, s.scale);
  MOE_CUDA_LAUNCHED();
  MOE_LAUNCH(grid, flash::kThreads, q_smem, stream, flash::flash_bwd_q<HD>)
  (qh, kh, vh, doh, lse, delta, dqh, s.S, s.scale);
  MOE_CUDA_LAUNCHED();
}

void fused_forward(const Shape& s, const bf16* qh, const bf16* kh, const bf16* vh, float* oh, float* lse,
                   Stream stream) {
  if (s.hd == 32) return fused_forward_hd<32>(s, qh, kh, vh, oh, lse, stream);
  if (s.hd == 64) return fused_forward_hd<64>(s, qh, kh, vh, oh, lse, stream);
  fused_forward_hd<128>(s, qh, kh, vh, oh, lse, stream);
}

void fused_backward(const Shape& s, const bf16* qh, const bf16* kh, const bf16* vh, const bf16* doh, const float* lse,
                    const float* delta, float* dqh, float* dkh, float* dvh, Stream stream) {
  if (s.hd == 32) return fused_backward_hd<32>(s, qh, kh, vh, doh, lse, delta, dqh, dkh, dvh, stream);
  if (s.hd == 64) return fused_backward_hd<64>(s, qh, kh, vh, doh, lse, delta, dqh, dkh, dvh, stream);
  fused_backward_hd<128>(s, qh, kh, vh, doh, lse, delta, dqh, dkh, dvh, stream);
}

template <class T>
void forward(const float* q, const float* k, const float* v, float* out, float* lse, const Shape& s, bool use_fused,
             Stream stream) {
  const int64_t n = s.BH * s.S * s.hd, hs = s.S * s.hd, tile = s.kb * s.ld;
  const int64_t tiles = use_fused ? 1 : s.BH * tile;  // the fused kernels keep their tiles in shared memory
  T *qh = alloc<T>(n, stream), *kh = alloc<T>(n, stream), *vh = alloc<T>(n, stream), *p = alloc<T>(tiles, stream);
  float *oh = alloc<float>(n, stream), *sc = alloc<float>(tiles, stream);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(q, qh, s.B, s.S, s.H, s.H, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(k, kh, s.B, s.S, s.H, s.Hkv, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(v, vh, s.B, s.S, s.H, s.Hkv, s.hd);
  MOE_CUDA_LAUNCHED();
  if (use_fused) fused_forward(s, reinterpret_cast<const bf16*>(qh), reinterpret_cast<const bf16*>(kh),
                               reinterpret_cast<const bf16*>(vh), oh, lse, stream);
  for (int64_t s0 = 0; s0 < s.S && !use_fused; s0 += s.kb) {
    const int64_t rows = std::min(s.kb, s.S - s0), cols = s0 + rows;
    const BlockRows d{s.BH, rows, s0, s.S, s.ld, s.kb, s.scale};
    head_gemm<T>(s, false, true, rows, cols, s.hd, qh + s0 * s.hd, s.hd, hs, kh, s.hd, hs, 0.0f, sc, s.ld, tile,
                 stream);  // scores = Q_blk K^T
    MOE_LAUNCH(warps_blocks(s.BH * rows), kThreads, 0, stream, probs_rows<T, true>)(sc, p, lse, d);
    MOE_CUDA_LAUNCHED();
    head_gemm<T>(s, false, false, rows, s.hd, cols, p, s.ld, tile, vh, s.hd, hs, 0.0f, oh + s0 * s.hd, s.hd, hs,
                 stream);  // O_blk = P V
  }
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, from_heads_sum)(oh, out, s.B, s.S, s.H, s.H, s.hd);
  MOE_CUDA_LAUNCHED();
  for (void* x : {(void*)qh, (void*)kh, (void*)vh, (void*)p, (void*)oh, (void*)sc}) stream_free(x, stream);
}

template <class T>
void backward(const float* q, const float* k, const float* v, const float* out, const float* lse, const float* dout,
              float* dq, float* dk, float* dv, const Shape& s, bool use_fused, Stream stream) {
  const int64_t n = s.BH * s.S * s.hd, hs = s.S * s.hd, tile = s.kb * s.ld;
  const int64_t tiles = use_fused ? 1 : s.BH * tile;  // the fused kernels keep their tiles in shared memory
  T *qh = alloc<T>(n, stream), *kh = alloc<T>(n, stream), *vh = alloc<T>(n, stream), *doh = alloc<T>(n, stream),
    *p = alloc<T>(tiles, stream);
  float *dqh = alloc<float>(n, stream), *dkh = alloc<float>(n, stream), *dvh = alloc<float>(n, stream),
        *sc = alloc<float>(tiles, stream), *dp = alloc<float>(tiles, stream),
        *delta = alloc<float>(s.BH * s.S, stream);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(q, qh, s.B, s.S, s.H, s.H, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(k, kh, s.B, s.S, s.H, s.Hkv, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(v, vh, s.B, s.S, s.H, s.Hkv, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_heads<T>)(dout, doh, s.B, s.S, s.H, s.H, s.hd);
  MOE_LAUNCH(blocks_for(s.BH * s.S), kThreads, 0, stream, row_delta)(out, dout, delta, s.B, s.S, s.H, s.hd);
  MOE_CUDA_LAUNCHED();
  if (use_fused) {
    fused_backward(s, reinterpret_cast<const bf16*>(qh), reinterpret_cast<const bf16*>(kh),
                   reinterpret_cast<const bf16*>(vh), reinterpret_cast<const bf16*>(doh), lse, delta, dqh, dkh, dvh,
                   stream);
  } else {
    MOE_CUDA_CHECK(cudaMemsetAsync(dkh, 0, sizeof(float) * n, stream));
    MOE_CUDA_CHECK(cudaMemsetAsync(dvh, 0, sizeof(float) * n, stream));
  }
  for (int64_t s0 = 0; s0 < s.S && !use_fused; s0 += s.kb) {
    const int64_t rows = std::min(s.kb, s.S - s0), cols = s0 + rows;
    const BlockRows d{s.BH, rows, s0, s.S, s.ld, s.kb, s.scale};
    const unsigned grid = warps_blocks(s.BH * rows);
    head_gemm<T>(s, false, true, rows, cols, s.hd, qh + s0 * s.hd, s.hd, hs, kh, s.hd, hs, 0.0f, sc, s.ld, tile,
                 stream);  // scores = Q_blk K^T
    MOE_LAUNCH(grid, kThreads, 0, stream, probs_rows<T, false>)(sc, p, const_cast<float*>(lse), d);
    MOE_CUDA_LAUNCHED();
    head_gemm<T>(s, true, false, cols, s.hd, rows, p, s.ld, tile, doh + s0 * s.hd, s.hd, hs, 1.0f, dvh, s.hd, hs,
                 stream);  // dV += P^T dO_blk
    head_gemm<T>(s, false, true, rows, cols, s.hd, doh + s0 * s.hd, s.hd, hs, vh, s.hd, hs, 0.0f, dp, s.ld, tile,
                 stream);  // dP = dO_blk V^T
    MOE_LAUNCH(grid, kThreads, 0, stream, dscores_rows<T>)(sc, dp, p, lse, delta, d);
    MOE_CUDA_LAUNCHED();
    head_gemm<T>(s, false, false, rows, s.hd, cols, p, s.ld, tile, kh, s.hd, hs, 0.0f, dqh + s0 * s.hd, s.hd, hs,
                 stream);  // dQ_blk = dS K
    head_gemm<T>(s, true, false, cols, s.hd, rows, p, s.ld, tile, qh + s0 * s.hd, s.hd, hs, 1.0f, dkh, s.hd, hs,
                 stream);  // dK += dS^T Q_blk
  }
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, from_heads_sum)(dqh, dq, s.B, s.S, s.H, s.H, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, from_heads_sum)(dkh, dk, s.B, s.S, s.H, s.Hkv, s.hd);
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, from_heads_sum)(dvh, dv, s.B, s.S, s.H, s.Hkv, s.hd);
  MOE_CUDA_LAUNCHED();
  for (void* x : {(void*)qh, (void*)kh, (void*)vh, (void*)doh, (void*)p, (void*)dqh, (void*)dkh, (void*)dvh,
                  (void*)sc, (void*)dp, (void*)delta})
    stream_free(x, stream);
}

bool use_fused_kernels(AttentionKernel kernel, bool bf16_matmuls, int64_t hd) {
  if (kernel == AttentionKernel::kBlocked) return false;
  MOE_CHECK(bf16_matmuls && fused_supports(hd),
            "CUDA attention: the fused kernels take bf16 operands and head_dim 32, 64 or 128 (head_dim " << hd << ")");
  return true;
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd, bool bf16_matmuls, AttentionKernel kernel, Stream stream) {
  if (B * S == 0) return;
  const Shape s = shape_of(B, S, H, Hkv, hd);
  const bool fused = use_fused_kernels(kernel, bf16_matmuls, hd);
  if (bf16_matmuls)
    forward<bf16>(q, k, v, out, lse, s, fused, stream);
  else
    forward<float>(q, k, v, out, lse, s, false, stream);
}

void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd, bool bf16_matmuls, AttentionKernel kernel, Stream stream) {
  if (B * S == 0) return;
  const Shape s = shape_of(B, S, H, Hkv, hd);
  const bool fused = use_fused_kernels(kernel, bf16_matmuls, hd);
  if (bf16_matmuls)
    backward<bf16>(q, k, v, out, lse, dout, dq, dk, dv, s, fused, stream);
  else
    backward<float>(q, k, v, out, lse, dout, dq, dk, dv, s, false, stream);
}

namespace {

// ||a - b|| / ||b|| over n device floats
double relative_l2(const float* a, const float* b, int64_t n) {
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  copy_to_host(x.data(), a, sizeof(float) * size_t(n));
  copy_to_host(y.data(), b, sizeof(float) * size_t(n));
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(x[size_t(i)]) - y[size_t(i)];
    num += d * d, den += double(y[size_t(i)]) * y[size_t(i)];
  }
  return std::isfinite(num) ? std::sqrt(num / std::max(den, 1e-30)) : INFINITY;
}

}  // namespace

AttentionChoice choose_attention_kernel(int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t hd) {
  AttentionChoice choice;
  if (B * S == 0) return choice;
  const int64_t nq = B * S * H * hd, nkv = B * S * Hkv * hd, nl = B * H * S;
  float* q = static_cast<float*>(random_device(nq, false, 11));
  float* k = static_cast<float*>(random_device(nkv, false, 12));
  float* v = static_cast<float*>(random_device(nkv, false, 13));
  float* dout = static_cast<float*>(random_device(nq, false, 14));
  struct Outputs {  // out, lse, dq, dk, dv of one implementation
    float* p[5];
    int64_t n[5];
  };
  auto outputs = [&] {
    Outputs o{{}, {nq, nl, nq, nkv, nkv}};
    for (int i = 0; i < 5; ++i) o.p[i] = static_cast<float*>(device_alloc(sizeof(float) * size_t(o.n[i])));
    return o;
  };
  Outputs blocked = outputs(), fused = outputs();
  auto forward = [&](AttentionKernel kernel, Outputs& o) {
    return median_ms([&] { attention_forward(q, k, v, o.p[0], o.p[1], B, S, H, Hkv, hd, true, kernel); });
  };
  auto backward = [&](AttentionKernel kernel, Outputs& o) {  // on the outputs of that kernel's forward
    return median_ms([&] {
      attention_backward(q, k, v, o.p[0], o.p[1], dout, o.p[2], o.p[3], o.p[4], B, S, H, Hkv, hd, true, kernel);
    });
  };
  auto worst_error = [&](int first, int last) {  // fused against blocked over outputs [first, last)
    double e = 0;
    for (int i = first; i < last; ++i) e = std::max(e, relative_l2(fused.p[i], blocked.p[i], blocked.n[i]));
    return e;
  };
  choice.blocked_fwd_ms = forward(AttentionKernel::kBlocked, blocked);
  choice.blocked_bwd_ms = backward(AttentionKernel::kBlocked, blocked);
  if (fused_supports(hd)) {
    choice.fused_fwd_ms = forward(AttentionKernel::kFused, fused);
    choice.fused_bwd_ms = backward(AttentionKernel::kFused, fused);
    choice.fused_fwd_rel_error = worst_error(0, 2);
    choice.fused_bwd_rel_error = worst_error(2, 5);
    if (choice.fused_fwd_ms < choice.blocked_fwd_ms && choice.fused_fwd_rel_error < 2e-2)
      choice.forward = AttentionKernel::kFused;
    if (choice.fused_bwd_ms < choice.blocked_bwd_ms && choice.fused_bwd_rel_error < 2e-2)
      choice.backward = AttentionKernel::kFused;
  }
  for (float* p : {q, k, v, dout}) device_free(p);
  for (Outputs* o : {&blocked, &fused})
    for (float* p : o->p) device_free(p);
  return choice;
}

}  // namespace moe::cuda
