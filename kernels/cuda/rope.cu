// Rotary position embedding on the GPU (twin of kernels/cpu/rope.cpp), in place.
#include "kernels/cuda/cuda_check.h"
#include "kernels/rope.h"

namespace moe::cuda {
namespace {

// One thread per (row, pair i < hd/2); sign = +1 forward, -1 backward (the opposite rotation).
__global__ void rope_kernel(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, float sign) {
  const int64_t half = hd / 2, pairs = B * S * nh * half;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < pairs; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, row = p / half, pos = (row / nh) % S;
    const double freq = pow(theta, -2.0 * double(i) / double(hd));
    double sn, cs;
    sincos(double(pos) * freq, &sn, &cs);
    float* r = x + row * hd;
    const float a = r[i], b = r[i + half], s = sign * float(sn), c = float(cs);
    r[i] = a * c - b * s;
    r[i + half] = b * c + a * s;
  }
}

}  // namespace

void rope_forward(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, Stream stream) {
  rope_kernel<<<blocks_for(B * S * nh * hd / 2), kThreads, 0, stream>>>(x, B, S, nh, hd, theta, 1.0f);
  MOE_CUDA_LAUNCHED();
}
void rope_backward(float* dx, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, Stream stream) {
  rope_kernel<<<blocks_for(B * S * nh * hd / 2), kThreads, 0, stream>>>(dx, B, S, nh, hd, theta, -1.0f);
  MOE_CUDA_LAUNCHED();
}

}  // namespace moe::cuda
