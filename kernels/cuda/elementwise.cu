// Element-wise helpers on the GPU (twins of kernels/cpu/elementwise.cpp), and the global squared
// norm of many tensors in one launch.
#include <cuda_bf16.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/vectorized.cuh"
#include "kernels/elementwise.h"

namespace moe::cuda {
namespace {

// V = float4 where the sizes and pointers allow it (vectorized.cuh), float otherwise.
template <class V>
__global__ void add_inplace_kernel(V* y, const V* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = y[i] + x[i];
}

template <class V>
__global__ void add_kernel(const V* a, const V* b, V* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = a[i] + b[i];
}

template <class V>
__global__ void scale_kernel(V* x, int64_t n, float s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    x[i] = s * x[i];
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

// Four at a time: a float4 in, two bf16 pairs (8 bytes) out, rounded as above.
__global__ void to_bf16x4_kernel(const float4* x, __nv_bfloat162* y, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float4 v = x[i];
    y[2 * i] = __floats2bfloat162_rn(v.x, v.y);
    y[2 * i + 1] = __floats2bfloat162_rn(v.z, v.w);
  }
}

template <class V>
const V* as(const float* p) {
  return reinterpret_cast<const V*>(p);
}
template <class V>
V* as(float* p) {
  return reinterpret_cast<V*>(p);
}

}  // namespace

void to_bf16(const float* x, void* y, int64_t n, Stream stream) {
  if (n == 0) return;
  if (vector4_ok(n, x) && aligned_to(y, 8)) {
    MOE_LAUNCH(blocks_for(n / 4), kThreads, 0, stream, to_bf16x4_kernel)
    (as<float4>(x), static_cast<__nv_bfloat162*>(y), n / 4);
  } else {
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, to_bf16_kernel)(x, static_cast<__nv_bfloat16*>(y), n);
  }
  MOE_CUDA_LAUNCHED();
}
void add_inplace(float* y, const float* x, int64_t n, Stream stream) {
  if (vector4_ok(n, y, x))
    MOE_LAUNCH(blocks_for(n / 4), kThreads, 0, stream, add_inplace_kernel<float4>)(as<float4>(y), as<float4>(x), n / 4);
  else
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, add_inplace_kernel<float>)(y, x, n);
  MOE_CUDA_LAUNCHED();
}
void add(const float* a, const float* b, float* out, int64_t n, Stream stream) {
  if (vector4_ok(n, a, b, out))
    MOE_LAUNCH(blocks_for(n / 4), kThreads, 0, stream, add_kernel<float4>)
    (as<float4>(a), as<float4>(b), as<float4>(out), n / 4);
  else
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, add_kernel<float>)(a, b, out, n);
  MOE_CUDA_LAUNCHED();
}
void scale_inplace(float* x, int64_t n, float s, Stream stream) {
  if (vector4_ok(n, x))
    MOE_LAUNCH(blocks_for(n / 4), kThreads, 0, stream, scale_kernel<float4>)(as<float4>(x), n / 4, s);
  else
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, scale_kernel<float>)(x, n, s);
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
  MOE_LAUNCH(kBlocks, kThreads, 0, stream, sum_squares_kernel)(d_tensors, d_sizes, count, d_partial);
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
