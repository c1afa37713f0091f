// Element-wise helpers on the GPU (twins of kernels/cpu/elementwise.cpp), and the global squared
// norm of many tensors in one launch.
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/elementwise.h"

namespace moe::cuda {
namespace {

__global__ void add_inplace_kernel(float* y, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] += x[i];
}
__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}
__global__ void scale_kernel(float* x, int64_t n, float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= s;
}

// Every block sums its slice of every tensor in double; block partials land in `partial`, summed
// in block order by the host, so the result does not depend on scheduling.
__global__ void sum_squares_kernel(const float* const* tensors, const int64_t* sizes, int count, double* partial) {
  __shared__ double lane[kThreads];
  double s = 0;
  for (int t = 0; t < count; ++t) {
    const float* x = tensors[t];
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < sizes[t]; i += int64_t(gridDim.x) * blockDim.x)
      s += double(x[i]) * double(x[i]);
  }
  lane[threadIdx.x] = s;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) lane[threadIdx.x] += lane[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = lane[0];
}

__global__ void to_bf16_kernel(const float* x, __nv_bfloat16* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2bfloat16(x[i]);  // round to nearest even
}

}  // namespace

void to_bf16(const float* x, void* y, int64_t n, Stream stream) {
  if (n == 0) return;
  to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, static_cast<__nv_bfloat16*>(y), n);
  MOE_CUDA_LAUNCHED();
}

void add_inplace(float* y, const float* x, int64_t n, Stream stream) {
  add_inplace_kernel<<<blocks_for(n), kThreads, 0, stream>>>(y, x, n);
  MOE_CUDA_LAUNCHED();
}
void add(const float* a, const float* b, float* out, int64_t n, Stream stream) {
  add_kernel<<<blocks_for(n), kThreads, 0, stream>>>(a, b, out, n);
  MOE_CUDA_LAUNCHED();
}
void scale_inplace(float* x, int64_t n, float s, Stream stream) {
  scale_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, n, s);
  MOE_CUDA_LAUNCHED();
}

double sum_squares_many(const float* const* tensors, const int64_t* sizes, int count, Stream stream) {
  constexpr int kBlocks = 512;
  const float** d_tensors = nullptr;
  int64_t* d_sizes = nullptr;
  double* d_partial = nullptr;
  d_tensors = static_cast<decltype(d_tensors)>(stream_alloc(sizeof(float*) * count, stream));
  d_sizes = static_cast<decltype(d_sizes)>(stream_alloc(sizeof(int64_t) * count, stream));
  d_partial = static_cast<decltype(d_partial)>(stream_alloc(sizeof(double) * kBlocks, stream));
  MOE_CUDA_CHECK(cudaMemcpyAsync(d_tensors, tensors, sizeof(float*) * count, cudaMemcpyHostToDevice, stream));
  MOE_CUDA_CHECK(cudaMemcpyAsync(d_sizes, sizes, sizeof(int64_t) * count, cudaMemcpyHostToDevice, stream));
  sum_squares_kernel<<<kBlocks, kThreads, 0, stream>>>(d_tensors, d_sizes, count, d_partial);
  MOE_CUDA_LAUNCHED();
  double partial[kBlocks];
  MOE_CUDA_CHECK(cudaMemcpyAsync(partial, d_partial, sizeof(partial), cudaMemcpyDeviceToHost, stream));
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  stream_free(d_tensors, stream);
  stream_free(d_sizes, stream);
  stream_free(d_partial, stream);
  double s = 0;
  for (double p : partial) s += p;
  return s;
}

double sum_squares(const float* x, int64_t n, Stream stream) { return sum_squares_many(&x, &n, 1, stream); }

}  // namespace moe::cuda
