// Causal grouped-query attention (output and saved logsumexp) against a plain loop, and its
// backward (which recomputes the probabilities) by finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "grad_check.h"
#include "kernels/attention.h"
#include "test_util.h"

namespace moe {
using test::random_vector;

struct AttnShape {
  int64_t B, S, H, Hkv, hd;
};

void PrintTo(const AttnShape& s, std::ostream* os) {
  *os << "B" << s.B << "_S" << s.S << "_H" << s.H << "_Hkv" << s.Hkv << "_hd" << s.hd;
}

static void reference_attention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                std::vector<double>& out, std::vector<double>& lse, const AttnShape& s) {
  out.assign(s.B * s.S * s.H * s.hd, 0.0);
  lse.assign(s.B * s.H * s.S, 0.0);
  const int64_t group = s.H / s.Hkv;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < s.S; ++i) {
        std::vector<double> sc(i + 1);
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (int64_t c = 0; c < s.hd; ++c)
            d += double(q[((b * s.S + i) * s.H + h) * s.hd + c]) * k[((b * s.S + j) * s.Hkv + h / group) * s.hd + c];
          sc[j] = d / std::sqrt(double(s.hd));
          mx = std::max(mx, sc[j]);
        }
        double z = 0;
        for (auto& x : sc) z += (x = std::exp(x - mx));
        lse[(b * s.H + h) * s.S + i] = mx + std::log(z);
        for (int64_t j = 0; j <= i; ++j)
          for (int64_t c = 0; c < s.hd; ++c)
            out[((b * s.S + i) * s.H + h) * s.hd + c] += sc[j] / z * v[((b * s.S + j) * s.Hkv + h / group) * s.hd + c];
      }
}

class AttentionTest : public ::testing::TestWithParam<AttnShape> {};

TEST_P(AttentionTest, ForwardMatchesLoopWithAndWithoutTheProbabilityCache) {
  auto s = GetParam();
  for (bool cached : {false, true}) {
  SCOPED_TRACE(cached ? "probabilities cached" : "probabilities recomputed");
  std::vector<float> cache(cached ? s.B * s.H * s.S * s.S : 0);
  auto q = random_vector(s.B * s.S * s.H * s.hd, 1), k = random_vector(s.B * s.S * s.Hkv * s.hd, 2),
       v = random_vector(s.B * s.S * s.Hkv * s.hd, 3);
  std::vector<float> out(q.size()), lse(s.B * s.H * s.S);
  attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s.B, s.S, s.H, s.Hkv, s.hd,
                    cached ? cache.data() : nullptr);
  std::vector<double> ref, ref_lse;
  reference_attention(q, k, v, ref, ref_lse, s);
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-5);
  for (size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse[i], ref_lse[i], 1e-5);
  }
}

TEST_P(AttentionTest, BackwardMatchesFiniteDifferencesWithAndWithoutTheProbabilityCache) {
  auto s = GetParam();
  for (bool cached : {false, true}) {
  SCOPED_TRACE(cached ? "probabilities cached" : "probabilities recomputed");
  std::vector<float> cache(cached ? s.B * s.H * s.S * s.S : 0);
  float* c = cached ? cache.data() : nullptr;
  auto q = random_vector(s.B * s.S * s.H * s.hd, 4), k = random_vector(s.B * s.S * s.Hkv * s.hd, 5),
       v = random_vector(s.B * s.S * s.Hkv * s.hd, 6), R = random_vector(q.size(), 7);
  auto loss = [&]() {
    std::vector<float> out(q.size()), lse(s.B * s.H * s.S);
    attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s.B, s.S, s.H, s.Hkv, s.hd);
    double t = 0;
    for (size_t i = 0; i < out.size(); ++i) t += double(out[i]) * R[i];
    return t;
  };
  std::vector<float> out(q.size()), lse(s.B * s.H * s.S), dq(q.size()), dk(k.size()), dv(v.size());
  attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s.B, s.S, s.H, s.Hkv, s.hd, c);
  attention_backward(q.data(), k.data(), v.data(), out.data(), lse.data(), R.data(), dq.data(), dk.data(), dv.data(),
                     s.B, s.S, s.H, s.Hkv, s.hd, c);
  int64_t stride = s.S > 64 ? 97 : 1;
  test::expect_grad_close(q, dq, loss, 1e-2, 2e-2, 2e-3, stride);
  test::expect_grad_close(k, dk, loss, 1e-2, 2e-2, 2e-3, stride);
  test::expect_grad_close(v, dv, loss, 1e-2, 2e-2, 2e-3, stride);
  }
}

// Small shapes, GQA groups of 1, 2 and 4, and a sequence longer than one 64-row block.
INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(AttnShape{1, 5, 2, 2, 4}, AttnShape{2, 7, 4, 2, 6}, AttnShape{1, 9, 4, 1, 4},
                                           AttnShape{1, 130, 2, 1, 8}),
                         [](const auto& info) {
                           std::ostringstream os;
                           PrintTo(info.param, &os);
                           return os.str();
                         });

}  // namespace moe
