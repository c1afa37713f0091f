// Helpers of the CUDA kernel tests (tests/cuda/test_cuda_*.cpp): the run-time GPU check and
// comparisons of device results with their CPU twins.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "test_util.h"

// Skips the test where no CUDA device can be used (CI compiles the CUDA code but has no GPU).
#define REQUIRE_GPU() \
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine"

namespace moe::test {

// Element by element: |gpu - cpu| <= atol + rtol |cpu|, the first difference reported.
inline void expect_close(const std::vector<float>& gpu, const std::vector<float>& cpu, double rtol, double atol,
                         const std::string& what) {
  ASSERT_EQ(gpu.size(), cpu.size()) << what;
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_NEAR(gpu[i], cpu[i], atol + rtol * std::fabs(cpu[i])) << what << " at " << i;
}

template <class T>
std::vector<T> down(const cuda::DeviceArray<T>& d) {
  return d.download();
}

// bf16 bit patterns of x, rounded to nearest even (as the device's conversions), and back.
inline std::vector<uint16_t> to_bf16_bits(const std::vector<float>& x) {
  std::vector<uint16_t> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &x[i], 4);
    bits += 0x7fff + ((bits >> 16) & 1);
    out[i] = uint16_t(bits >> 16);
  }
  return out;
}
inline std::vector<float> from_bf16_bits(const std::vector<uint16_t>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    uint32_t bits = uint32_t(x[i]) << 16;
    std::memcpy(&out[i], &bits, 4);
  }
  return out;
}

}  // namespace moe::test

namespace moe {
// The names the CUDA kernel tests use unqualified.
using cuda::DeviceArray;
using test::down;
using test::expect_close;
using test::from_bf16_bits;
using test::random_vector;
using test::to_bf16_bits;
}  // namespace moe
