// Central finite differences for gradient tests.
#pragma once
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include <gtest/gtest.h>

namespace moe::test {

// Checks analytic[i] against (f(x + eps e_i) - f(x - eps e_i)) / 2 eps for every `stride`-th i.
inline void expect_grad_close(std::vector<float>& x, const std::vector<float>& analytic,
                              const std::function<double()>& f, double eps = 1e-2, double rtol = 2e-2,
                              double atol = 2e-3, int64_t stride = 1) {
  ASSERT_EQ(x.size(), analytic.size());
  for (size_t i = 0; i < x.size(); i += size_t(stride)) {
    float saved = x[i];
    x[i] = saved + float(eps);
    double up = f();
    x[i] = saved - float(eps);
    double down = f();
    x[i] = saved;
    double numeric = (up - down) / (2 * eps);
    EXPECT_NEAR(analytic[i], numeric, atol + rtol * std::fabs(numeric)) << "element " << i;
  }
}

}  // namespace moe::test
