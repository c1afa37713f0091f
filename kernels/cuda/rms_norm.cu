// RMSNorm on the GPU (twin of kernels/cpu/rms_norm.cpp): one block per row.
#include "kernels/cuda/cuda_check.h"
#include "kernels/rms_norm.h"

namespace moe::cuda {
namespace {

__device__ float block_sum(float v) {
  __shared__ float warp_sums[32];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // warp_sums may still be read by a previous call
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  float total = 0;
  for (int w = 0; w < int(blockDim.x + 31) / 32; ++w) total += warp_sums[w];
  return total;
}

__global__ void rms_norm_fwd(const float* x, const float* w, float* y, float* rstd, int64_t D, float eps) {
  const float* xr = x + blockIdx.x * D;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
  const float r = rsqrtf(block_sum(ss) / float(D) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = r;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) y[blockIdx.x * D + i] = xr[i] * r * w[i];
}

// dx = r * (w dy - x r^2 mean(x w dy));  dw += dy x r (atomics across rows)
__global__ void rms_norm_bwd(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                             int64_t D) {
  const int64_t row = blockIdx.x;
  const float *xr = x + row * D, *dyr = dy + row * D;
  const float r = rstd[row];
  float dot = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) dot += xr[i] * w[i] * dyr[i];
  const float mean = block_sum(dot) / float(D);
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
    dx[row * D + i] = r * (w[i] * dyr[i] - xr[i] * r * r * mean);
    atomicAdd(dw + i, dyr[i] * xr[i] * r);
  }
}

}  // namespace

void rms_norm_forward(const float* x, const float* w, float* y, float* rstd, int64_t T, int64_t D, float eps,
                      Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(unsigned(T), kThreads, 0, stream, rms_norm_fwd)(x, w, y, rstd, D, eps);
  MOE_CUDA_LAUNCHED();
}
void rms_norm_backward(const float* x, const float* w, const float* rstd, const float* dy, float* dx, float* dw,
                       int64_t T, int64_t D, Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(unsigned(T), kThreads, 0, stream, rms_norm_bwd)(x, w, rstd, dy, dx, dw, D);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
