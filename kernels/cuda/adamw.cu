// AdamW on the GPU (twin of kernels/cpu/adamw.cpp). adamw_update_many updates every tensor of the
// model in ONE launch: the host cuts the tensors into fixed chunks, and block b updates chunk b.
// It applies the clipping coefficient to the gradients on the fly and, for bf16 training, writes
// the bf16 compute copy of each updated fp32 master weight.
#include <cuda_bf16.h>

#include <vector>

#include "kernels/adamw.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"

namespace moe::cuda {
namespace {

constexpr int64_t kChunk = 16384;

struct Chunk {
  int tensor;
  int64_t begin, end;
};

__device__ inline void adamw_element(float* p, const float* g, float* m, float* v, int64_t i, float grad_scale,
                                     float decay, float step_size, float bc2_sqrt, float beta1, float beta2,
                                     float eps) {
  const float gi = g[i] * grad_scale;
  const float pi = p[i] * decay;
  const float mi = m[i] + (1.0f - beta1) * (gi - m[i]);
  const float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = pi - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float decay, float step_size,
                             float bc2_sqrt, float beta1, float beta2, float eps) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    adamw_element(p, g, m, v, i, 1.0f, decay, step_size, bc2_sqrt, beta1, beta2, eps);
}

__global__ void adamw_many_kernel(const AdamWTensor* tensors, const Chunk* chunks, float lr, float beta1, float beta2,
                                  float eps, float bias_correction1, float bias_correction2, float grad_scale) {
  const Chunk c = chunks[blockIdx.x];
  const AdamWTensor t = tensors[c.tensor];
  const float decay = 1.0f - lr * t.weight_decay, step_size = lr / bias_correction1;
  const float bc2_sqrt = sqrtf(bias_correction2);
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    adamw_element(t.p, t.g, t.m, t.v, i, grad_scale, decay, step_size, bc2_sqrt, beta1, beta2, eps);
    if (t.p_bf16) reinterpret_cast<__nv_bfloat16*>(t.p_bf16)[i] = __float2bfloat16(t.p[i]);
  }
}

}  // namespace

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float bias_correction1, float bias_correction2, Stream stream) {
  if (n == 0) return;
  MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, adamw_kernel)
  (p, g, m, v, n, 1.0f - lr * weight_decay, lr / bias_correction1, sqrtf(bias_correction2), beta1, beta2, eps);
  MOE_CUDA_LAUNCHED();
}

void adamw_update_many(const AdamWTensor* tensors, int count, float lr, float beta1, float beta2, float eps,
                       float bias_correction1, float bias_correction2, float grad_scale, Stream stream) {
  std::vector<Chunk> chunks;
  for (int t = 0; t < count; ++t)
    for (int64_t b = 0; b < tensors[t].n; b += kChunk) chunks.push_back({t, b, std::min(tensors[t].n, b + kChunk)});
  if (chunks.empty()) return;
  AdamWTensor* d_tensors = nullptr;
  Chunk* d_chunks = nullptr;
  d_tensors = static_cast<decltype(d_tensors)>(stream_alloc(sizeof(AdamWTensor) * count, stream));
  d_chunks = static_cast<decltype(d_chunks)>(stream_alloc(sizeof(Chunk) * chunks.size(), stream));
  MOE_CUDA_CHECK(cudaMemcpyAsync(d_tensors, tensors, sizeof(AdamWTensor) * count, cudaMemcpyHostToDevice, stream));
  MOE_CUDA_CHECK(
      cudaMemcpyAsync(d_chunks, chunks.data(), sizeof(Chunk) * chunks.size(), cudaMemcpyHostToDevice, stream));
  MOE_LAUNCH(unsigned(chunks.size()), kThreads, 0, stream, adamw_many_kernel)
  (d_tensors, d_chunks, lr, beta1, beta2, eps, bias_correction1, bias_correction2, grad_scale);
  MOE_CUDA_LAUNCHED();
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host chunk table goes out of scope
  stream_free(d_tensors, stream);
  stream_free(d_chunks, stream);
}

}  // namespace moe::cuda
