// Cross-entropy on the GPU (twins of kernels/cpu/cross_entropy.cpp): one block per row.
#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>

#include "kernels/cross_entropy.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/gemm.h"

namespace moe::cuda {
namespace {

template <bool kMax>
__device__ float block_reduce(float v) {
  __shared__ float lane[kThreads];
  lane[threadIdx.x] = v;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride)
      lane[threadIdx.x] = kMax ? fmaxf(lane[threadIdx.x], lane[threadIdx.x + stride])
                               : lane[threadIdx.x] + lane[threadIdx.x + stride];
    __syncthreads();
  }
  const float out = lane[0];
  __syncthreads();
  return out;
}

__global__ void row_max_kernel(const float* logits, int64_t V, float* row_max) {
  const float* l = logits + blockIdx.x * V;
  float m = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, l[i]);
  m = block_reduce<true>(m);
  if (threadIdx.x == 0) row_max[blockIdx.x] = m;
}

__global__ void sum_exp_kernel(const float* logits, const float* row_max, int64_t V, float* sum_exp) {
  const float* l = logits + blockIdx.x * V;
  const float m = row_max[blockIdx.x];
  float s = 0;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) s += expf(l[i] - m);
  s = block_reduce<false>(s);
  if (threadIdx.x == 0) sum_exp[blockIdx.x] = s;
}

__global__ void target_logit_kernel(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* out) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t < T) out[t] = targets[t] >= 0 ? logits[t * V + targets[t]] : 0.0f;
}

__global__ void backward_kernel(const float* logits, const int32_t* targets, const float* row_max,
                                const float* sum_exp, int64_t V, float grad_scale, float* dlogits) {
  const int64_t t = blockIdx.x;
  const float m = row_max[t], inv = 1.0f / sum_exp[t];
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float p = expf(logits[t * V + i] - m) * inv;
    dlogits[t * V + i] = (p - (i == targets[t] ? 1.0f : 0.0f)) * grad_scale;
  }
}

__global__ void rescale_kernel(const float* from_max, const float* to_max, int64_t T, float* sum_exp) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t < T) sum_exp[t] *= expf(from_max[t] - to_max[t]);
}

__global__ void loss_kernel(const float* row_max, const float* sum_exp, const float* target_logit, int64_t T,
                            float* loss) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t < T) loss[t] = row_max[t] + logf(sum_exp[t]) - target_logit[t];
}

// Folds one vocabulary chunk of logits [T, c] (columns v0..v0+c) into the running row max, sum of
// exponentials and target logit: one block per row.
__global__ void fold_chunk(const float* logits, int64_t c, int64_t v0, const int32_t* targets, float* row_max,
                           float* sum_exp, float* target_logit) {
  const int64_t t = blockIdx.x;
  const float* l = logits + t * c;
  float m = -FLT_MAX;
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) m = fmaxf(m, l[i]);
  m = block_reduce<true>(m);
  float s = 0;
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) s += expf(l[i] - m);
  s = block_reduce<false>(s);
  if (threadIdx.x != 0) return;
  const float m_old = row_max[t], m_new = fmaxf(m_old, m);
  sum_exp[t] = sum_exp[t] * expf(m_old - m_new) + s * expf(m - m_new);
  row_max[t] = m_new;
  const int64_t target = targets[t];
  if (target >= v0 && target < v0 + c) target_logit[t] = l[target - v0];
}

__global__ void fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

// Logits of columns v0..v0+c -> (softmax - onehot) * grad_scale into out (fp32 in place, or bf16).
template <class T>
__global__ void chunk_backward(float* logits, T* out, int64_t c, int64_t v0, const int32_t* targets,
                               const float* row_max, const float* sum_exp, float grad_scale) {
  const int64_t t = blockIdx.x;
  const float m = row_max[t], inv = 1.0f / sum_exp[t];
  for (int64_t i = threadIdx.x; i < c; i += blockDim.x) {
    const float p = expf(logits[t * c + i] - m) * inv;
    out[t * c + i] = T((p - (v0 + i == targets[t] ? 1.0f : 0.0f)) * grad_scale);
  }
}

// The fused LM head with fp32 operands, or bf16 ones (h, W and the logit gradients rounded;
// fp32 accumulation, softmax, loss, dh and dW).
void lm_head_ce(bool bf16, const void* h, const void* W, const int32_t* targets, int64_t T, int64_t D, int64_t V,
                int64_t chunk, float grad_scale, float* loss, float* dh, float* dW, float* scratch, void* scratch_bf16,
                const LmHeadStatsReduce& reduce_stats, Stream stream) {
  if (T == 0) return;
  MOE_CHECK(chunk > 0, "lm_head_cross_entropy: chunk must be > 0");
  const size_t esize = bf16 ? 2 : 4;
  auto rows_of = [&](const void* base, int64_t v0) { return static_cast<const char*>(base) + size_t(v0 * D) * esize; };
  auto logits = [&](int64_t v0, int64_t c) {  // scratch [T, c] = h W_c^T
    if (bf16)
      gemm_bf16(false, true, T, c, D, 1.0f, h, D, rows_of(W, v0), D, 0.0f, scratch, c, false, stream);
    else
      gemm(false, true, T, c, D, 1.0f, static_cast<const float*>(h), D, reinterpret_cast<const float*>(rows_of(W, v0)),
           D, 0.0f, scratch, c, stream);
  };
  float* stats = nullptr;  // row_max, sum_exp, target_logit: [3, T]
  stats = static_cast<decltype(stats)>(stream_alloc(sizeof(float) * 3 * T, stream));
  float *row_max = stats, *sum_exp = stats + T, *target_logit = stats + 2 * T;
  MOE_LAUNCH(blocks_for(T), kThreads, 0, stream, fill_kernel)(row_max, T, -FLT_MAX);
  MOE_CUDA_CHECK(cudaMemsetAsync(sum_exp, 0, sizeof(float) * 2 * T, stream));
  for (int64_t v0 = 0; v0 < V; v0 += chunk) {
    const int64_t c = std::min(chunk, V - v0);
    logits(v0, c);
    MOE_LAUNCH(unsigned(T), kThreads, 0, stream, fold_chunk)(scratch, c, v0, targets, row_max, sum_exp, target_logit);
    MOE_CUDA_LAUNCHED();
  }
  if (reduce_stats) reduce_stats(row_max, sum_exp, target_logit);  // the other vocabulary shards' statistics
  MOE_LAUNCH(blocks_for(T), kThreads, 0, stream, loss_kernel)(row_max, sum_exp, target_logit, T, loss);
  MOE_CUDA_LAUNCHED();
  if (dh) {
    MOE_CUDA_CHECK(cudaMemsetAsync(dh, 0, sizeof(float) * T * D, stream));
    const bool one_chunk = chunk >= V;  // its logits are still in scratch: not computed again
    for (int64_t v0 = 0; v0 < V; v0 += chunk) {
      const int64_t c = std::min(chunk, V - v0);
      if (!one_chunk) logits(v0, c);
      if (bf16) {
        MOE_LAUNCH(unsigned(T), kThreads, 0, stream, chunk_backward<__nv_bfloat16>)
        (scratch, static_cast<__nv_bfloat16*>(scratch_bf16), c, v0, targets, row_max, sum_exp, grad_scale);
        MOE_CUDA_LAUNCHED();
        gemm_bf16(false, false, T, D, c, 1.0f, scratch_bf16, c, rows_of(W, v0), D, 1.0f, dh, D, false, stream);
        gemm_bf16(true, false, c, D, T, 1.0f, scratch_bf16, c, h, D, 1.0f, dW + v0 * D, D, false, stream);
      } else {
        MOE_LAUNCH(unsigned(T), kThreads, 0, stream, chunk_backward<float>)
        (scratch, scratch, c, v0, targets, row_max, sum_exp, grad_scale);
        MOE_CUDA_LAUNCHED();
        const float* Wc = reinterpret_cast<const float*>(rows_of(W, v0));
        gemm(false, false, T, D, c, 1.0f, scratch, c, Wc, D, 1.0f, dh, D, stream);  // dh += dl W_c
        gemm(true, false, c, D, T, 1.0f, scratch, c, static_cast<const float*>(h), D, 1.0f, dW + v0 * D, D,
             stream);  // dW_c += dl^T h
      }
    }
  }
  stream_free(stats, stream);
}

}  // namespace

void lm_head_cross_entropy(const float* h, const float* W, const int32_t* targets, int64_t T, int64_t D, int64_t V,
                           int64_t chunk, float grad_scale, float* loss, float* dh, float* dW, float* scratch,
                           const LmHeadStatsReduce& reduce_stats, Stream stream) {
  lm_head_ce(false, h, W, targets, T, D, V, chunk, grad_scale, loss, dh, dW, scratch, nullptr, reduce_stats, stream);
}

void lm_head_cross_entropy_bf16(const void* h, const void* W, const int32_t* targets, int64_t T, int64_t D, int64_t V,
                                int64_t chunk, float grad_scale, float* loss, float* dh, float* dW, float* scratch,
                                void* scratch_bf16, const LmHeadStatsReduce& reduce_stats, Stream stream) {
  lm_head_ce(true, h, W, targets, T, D, V, chunk, grad_scale, loss, dh, dW, scratch, scratch_bf16, reduce_stats,
             stream);
}

void cross_entropy_row_max(const float* logits, int64_t T, int64_t V, float* row_max, Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(unsigned(T), kThreads, 0, stream, row_max_kernel)(logits, V, row_max);
  MOE_CUDA_LAUNCHED();
}
void cross_entropy_sum_exp(const float* logits, const float* row_max, int64_t T, int64_t V, float* sum_exp,
                           Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(unsigned(T), kThreads, 0, stream, sum_exp_kernel)(logits, row_max, V, sum_exp);
  MOE_CUDA_LAUNCHED();
}
void cross_entropy_target_logit(const float* logits, const int32_t* targets, int64_t T, int64_t V, float* out,
                                Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(blocks_for(T), kThreads, 0, stream, target_logit_kernel)(logits, targets, T, V, out);
  MOE_CUDA_LAUNCHED();
}
void cross_entropy_backward(const float* logits, const int32_t* targets, const float* row_max, const float* sum_exp,
                            int64_t T, int64_t V, float grad_scale, float* dlogits, Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(unsigned(T), kThreads, 0, stream, backward_kernel)
  (logits, targets, row_max, sum_exp, V, grad_scale, dlogits);
  MOE_CUDA_LAUNCHED();
}
void cross_entropy_rescale_sum_exp(const float* from_max, const float* to_max, int64_t T, float* sum_exp,
                                   Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(blocks_for(T), kThreads, 0, stream, rescale_kernel)(from_max, to_max, T, sum_exp);
  MOE_CUDA_LAUNCHED();
}
void cross_entropy_loss(const float* row_max, const float* sum_exp, const float* target_logit, int64_t T, float* loss,
                        Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(blocks_for(T), kThreads, 0, stream, loss_kernel)(row_max, sum_exp, target_logit, T, loss);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
