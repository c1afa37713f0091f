// Helpers of the CUDA kernel tests (tests/cuda/test_cuda_*.cpp): the run-time GPU check and
// comparisons of device results with their CPU twins.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
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

}  // namespace moe::test

namespace moe {
// The names the CUDA kernel tests use unqualified.
using cuda::DeviceArray;
using test::down;
using test::expect_close;
using test::random_vector;
}  // namespace moe
