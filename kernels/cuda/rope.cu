// Rotary position embedding on the GPU (twin of kernels/cpu/rope.cpp), in place. The angles'
// cosines and sines are computed once per (S, hd, theta) into a device table, in double and then
// rounded to float exactly as the CPU twin does, so every later call only reads them.
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/rope.h"

namespace moe::cuda {
namespace {

// table[pos * hd/2 + i] = (cos, sin) of pos * theta^(-2i/hd), for pos < S.
__global__ void rope_table_kernel(float2* table, int64_t S, int64_t hd, double theta) {
  const int64_t half = hd / 2;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < S * half; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, pos = p / half;
    const double freq = pow(theta, -2.0 * double(i) / double(hd));
    double sn, cs;
    sincos(double(pos) * freq, &sn, &cs);
    table[p] = make_float2(float(cs), float(sn));
  }
}

// One thread per (row, pair i < hd/2); sign = +1 forward, -1 backward (the opposite rotation).
__global__ void rope_kernel(float* x, const float2* table, int64_t B, int64_t S, int64_t nh, int64_t hd, float sign) {
  const int64_t half = hd / 2, pairs = B * S * nh * half;
  for (int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; p < pairs; p += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = p % half, row = p / half, pos = (row / nh) % S;
    const float2 angle = table[pos * half + i];
    float* r = x + row * hd;
    const float a = r[i], b = r[i + half], s = sign * angle.y, c = angle.x;
    r[i] = a * c - b * s;
    r[i + half] = b * c + a * s;
  }
}

// The table for (S, hd, theta), made on first use and kept for the process (never freed: the
// process's end, not a destructor racing the CUDA runtime's teardown, releases it).
const float2* angle_table(int64_t S, int64_t hd, double theta, Stream stream) {
  static std::mutex mutex;
  static auto* tables = new std::map<std::tuple<int64_t, int64_t, double>, DeviceArray<float2>>;
  std::lock_guard<std::mutex> lock(mutex);
  auto [it, made] = tables->try_emplace(std::make_tuple(S, hd, theta));
  if (made) {
    it->second = DeviceArray<float2>(size_t(S * (hd / 2)));
    MOE_LAUNCH(blocks_for(S * (hd / 2)), kThreads, 0, stream, rope_table_kernel)(it->second.data(), S, hd, theta);
    MOE_CUDA_LAUNCHED();
    MOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // ready for calls on any stream
  }
  return it->second.data();
}

void rope(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, float sign, Stream stream) {
  if (B * S * nh * (hd / 2) == 0) return;
  const float2* table = angle_table(S, hd, theta, stream);
  MOE_LAUNCH(blocks_for(B * S * nh * (hd / 2)), kThreads, 0, stream, rope_kernel)(x, table, B, S, nh, hd, sign);
  MOE_CUDA_LAUNCHED();
}

}  // namespace

void rope_forward(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, Stream stream) {
  rope(x, B, S, nh, hd, theta, 1.0f, stream);
}
void rope_backward(float* dx, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, Stream stream) {
  rope(dx, B, S, nh, hd, theta, -1.0f, stream);
}

}  // namespace moe::cuda
