// GEMM, RMSNorm, RoPE, SwiGLU, cross-entropy and embedding kernels against plain loops, and their
// backwards against finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "grad_check.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "test_util.h"

namespace moe {
using test::random_vector;

TEST(Gemm, AllTransposesMatchLoop) {
  const int64_t M = 7, N = 5, K = 9;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      auto A = random_vector(M * K, 1), B = random_vector(K * N, 2), C = random_vector(M * N, 3);
      auto ref = C;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k) s += double(ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
          ref[i * N + j] = float(0.5 * s + 2.0 * C[i * N + j]);
        }
      gemm(ta, tb, M, N, K, 0.5f, A.data(), ta ? M : K, B.data(), tb ? K : N, 2.0f, C.data(), N);
      EXPECT_LT(test::max_abs_diff(C.data(), ref.data(), M * N), 1e-4) << "ta=" << ta << " tb=" << tb;
    }
}

TEST(Gemm, GroupedRowsAndWeightGradMatchPerGroupLoops) {
  const int64_t G = 4, N = 6, K = 5;
  std::vector<int64_t> offsets = {0, 3, 3, 10, 12};  // one empty group
  const int64_t rows = offsets.back();
  auto A = random_vector(rows * K, 4), B = random_vector(G * N * K, 5);
  std::vector<float> C(rows * N, 0.0f), ref(rows * N, 0.0f);
  gemm_grouped_rows(G, G, offsets.data(), true, N, K, 1.0f, A.data(), K, B.data(), N * K, K, 0.0f, C.data(), N);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r)
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += double(A[r * K + k]) * B[g * N * K + j * K + k];
        ref[r * N + j] = float(s);
      }
  EXPECT_LT(test::max_abs_diff(C.data(), ref.data(), rows * N), 1e-4);

  auto Y = random_vector(rows * N, 6);
  std::vector<float> W(G * K * N, 1.0f), Wref(G * K * N, 1.0f);
  gemm_grouped_weight_grad(G, G, offsets.data(), K, N, A.data(), K, Y.data(), N, W.data(), K * N);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t a = 0; a < K; ++a)
      for (int64_t b = 0; b < N; ++b) {
        double s = 1.0;
        for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r) s += double(A[r * K + a]) * Y[r * N + b];
        Wref[g * K * N + a * N + b] = float(s);
      }
  EXPECT_LT(test::max_abs_diff(W.data(), Wref.data(), G * K * N), 1e-4);

  // Two weights serving four groups (g uses weight g % 2), as after an expert-parallel dispatch.
  std::vector<float> C2(rows * N), W2(2 * K * N, 0.0f), W2ref(2 * K * N, 0.0f);
  gemm_grouped_rows(G, 2, offsets.data(), true, N, K, 1.0f, A.data(), K, B.data(), N * K, K, 0.0f, C2.data(), N);
  gemm_grouped_weight_grad(G, 2, offsets.data(), K, N, A.data(), K, Y.data(), N, W2.data(), K * N);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r) {
      for (int64_t j = 0; j < N; ++j) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += double(A[r * K + k]) * B[(g % 2) * N * K + j * K + k];
        EXPECT_NEAR(C2[r * N + j], s, 1e-4);
      }
      for (int64_t a = 0; a < K; ++a)
        for (int64_t b = 0; b < N; ++b) W2ref[(g % 2) * K * N + a * N + b] += A[r * K + a] * Y[r * N + b];
    }
  EXPECT_LT(test::max_abs_diff(W2.data(), W2ref.data(), 2 * K * N), 1e-4);
}

TEST(RmsNorm, ForwardMatchesLoopAndBackwardMatchesFiniteDifferences) {
  const int64_t T = 5, D = 8;
  const float eps = 1e-5f;
  auto x = random_vector(T * D, 7), w = random_vector(D, 8), R = random_vector(T * D, 9);
  std::vector<float> y(T * D), rstd(T);
  rms_norm_forward(x.data(), w.data(), y.data(), rstd.data(), T, D, eps);
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < D; ++i) ss += double(x[t * D + i]) * x[t * D + i];
    for (int64_t i = 0; i < D; ++i)
      EXPECT_NEAR(y[t * D + i], x[t * D + i] / std::sqrt(ss / D + eps) * w[i], 1e-5);
  }
  auto loss = [&]() {
    std::vector<float> yy(T * D), rr(T);
    rms_norm_forward(x.data(), w.data(), yy.data(), rr.data(), T, D, eps);
    double s = 0;
    for (int64_t i = 0; i < T * D; ++i) s += double(yy[i]) * R[i];
    return s;
  };
  std::vector<float> dx(T * D), dw(D, 0.0f);
  rms_norm_forward(x.data(), w.data(), y.data(), rstd.data(), T, D, eps);
  rms_norm_backward(x.data(), w.data(), rstd.data(), R.data(), dx.data(), dw.data(), T, D);
  test::expect_grad_close(x, dx, loss);
  test::expect_grad_close(w, dw, loss);
}

TEST(Rope, ForwardMatchesFormulaAndBackwardIsItsGradient) {
  const int64_t B = 2, S = 6, nh = 3, hd = 8;
  const double theta = 10000.0;
  auto x = random_vector(B * S * nh * hd, 10);
  auto y = x;
  rope_forward(y.data(), B, S, nh, hd, theta);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t i = 0; i < hd / 2; ++i) {
          int64_t base = ((b * S + s) * nh + h) * hd;
          double ang = s * std::pow(theta, -2.0 * i / hd);
          double a = x[base + i], c = x[base + i + hd / 2];
          EXPECT_NEAR(y[base + i], a * std::cos(ang) - c * std::sin(ang), 1e-5);
          EXPECT_NEAR(y[base + i + hd / 2], c * std::cos(ang) + a * std::sin(ang), 1e-5);
        }
  auto R = random_vector(x.size(), 11);
  auto loss = [&]() {
    auto yy = x;
    rope_forward(yy.data(), B, S, nh, hd, theta);
    double s = 0;
    for (size_t i = 0; i < yy.size(); ++i) s += double(yy[i]) * R[i];
    return s;
  };
  auto dx = R;
  rope_backward(dx.data(), B, S, nh, hd, theta);
  test::expect_grad_close(x, dx, loss);
}

TEST(SwiGlu, ForwardAndBackward) {
  const int64_t n = 64;
  auto g = random_vector(n, 12, 2.0f), u = random_vector(n, 13), R = random_vector(n, 14);
  std::vector<float> h(n), dg(n), du(n);
  swiglu_forward(g.data(), u.data(), h.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(h[i], g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-5);
  auto loss = [&]() {
    std::vector<float> hh(n);
    swiglu_forward(g.data(), u.data(), hh.data(), n);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(hh[i]) * R[i];
    return s;
  };
  swiglu_backward(g.data(), u.data(), R.data(), dg.data(), du.data(), n);
  test::expect_grad_close(g, dg, loss, 1e-3);
  test::expect_grad_close(u, du, loss, 1e-3);
}

TEST(CrossEntropy, ForwardMatchesLoopAndGradientIsSoftmaxMinusOneHot) {
  const int64_t T = 4, V = 11;
  auto logits = random_vector(T * V, 15, 3.0f);
  std::vector<int32_t> targets = {0, 10, 5, 5};
  std::vector<float> loss(T), dl(T * V);
  cross_entropy_forward_backward(logits.data(), targets.data(), T, V, loss.data(), dl.data(), 0.5f);
  for (int64_t t = 0; t < T; ++t) {
    double mx = -1e30, s = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(logits[t * V + v]));
    for (int64_t v = 0; v < V; ++v) s += std::exp(logits[t * V + v] - mx);
    EXPECT_NEAR(loss[t], mx + std::log(s) - logits[t * V + targets[t]], 1e-5);
  }
  auto f = [&]() {
    std::vector<float> l(T);
    cross_entropy_forward_backward(logits.data(), targets.data(), T, V, l.data(), nullptr, 0.0f);
    double s = 0;
    for (auto v : l) s += 0.5 * v;
    return s;
  };
  test::expect_grad_close(logits, dl, f, 1e-3);
}

TEST(Embedding, ForwardGathersAndBackwardSumsRepeatedTokens) {
  const int64_t V = 5, D = 70, T = 4;
  auto table = random_vector(V * D, 16);
  std::vector<int32_t> tokens = {3, 1, 3, 0};
  std::vector<float> out(T * D);
  embedding_forward(tokens.data(), table.data(), out.data(), T, D);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) EXPECT_EQ(out[t * D + i], table[tokens[t] * D + i]);
  auto dout = random_vector(T * D, 17);
  std::vector<float> dtable(V * D, 0.0f);
  embedding_backward(tokens.data(), dout.data(), dtable.data(), T, D);
  for (int64_t i = 0; i < D; ++i) {
    EXPECT_FLOAT_EQ(dtable[3 * D + i], dout[0 * D + i] + dout[2 * D + i]);
    EXPECT_FLOAT_EQ(dtable[1 * D + i], dout[1 * D + i]);
    EXPECT_FLOAT_EQ(dtable[2 * D + i], 0.0f);
  }
}

TEST(Elementwise, SumSquaresIsExactForKnownInput) {
  std::vector<float> x(100000, 0.5f);
  EXPECT_DOUBLE_EQ(sum_squares(x.data(), int64_t(x.size())), 25000.0);
}

}  // namespace moe
