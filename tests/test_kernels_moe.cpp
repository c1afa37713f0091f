// Router (softmax / sigmoid, bias, norm_topk) and Order / Unorder kernels against plain loops; router
// backward by finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <numeric>

#include "grad_check.h"
#include "kernels/moe_order.h"
#include "kernels/router.h"
#include "test_util.h"

namespace moe {
using test::random_vector;

struct RouterCase {
  bool sigmoid, norm_topk, bias;
  int64_t k;
};

void PrintTo(const RouterCase& c, std::ostream* os) {
  *os << (c.sigmoid ? "sigmoid" : "softmax") << (c.norm_topk ? "_norm" : "_raw") << (c.bias ? "_bias" : "") << "_top"
      << c.k;
}

class RouterTest : public ::testing::TestWithParam<RouterCase> {};

TEST_P(RouterTest, ForwardMatchesLoop) {
  auto c = GetParam();
  const int64_t T = 6, E = 5, k = c.k;
  auto logits = random_vector(T * E, 1, 2.0f);
  auto bias = random_vector(E, 2, 0.3f);
  std::vector<float> scores(T * E), probs(T * E), lse(T), w(T * k);
  std::vector<int32_t> idx(T * k);
  router_forward(logits.data(), c.bias ? bias.data() : nullptr, T, E, k, c.sigmoid, c.norm_topk, scores.data(),
                 probs.data(), lse.data(), idx.data(), w.data());
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> s(E), sel(E);
    double z = 0, ssum = 0;
    for (int64_t e = 0; e < E; ++e) z += std::exp(double(logits[t * E + e]));
    for (int64_t e = 0; e < E; ++e) {
      double l = logits[t * E + e];
      s[e] = c.sigmoid ? 1 / (1 + std::exp(-l)) : std::exp(l) / z;
      ssum += s[e];
      sel[e] = s[e] + (c.bias ? bias[e] : 0.0);
    }
    EXPECT_NEAR(lse[t], std::log(z), 1e-5);
    for (int64_t e = 0; e < E; ++e) {
      EXPECT_NEAR(scores[t * E + e], s[e], 1e-6);
      EXPECT_NEAR(probs[t * E + e], s[e] / ssum, 1e-6);
    }
    std::vector<int> order(E);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return sel[a] > sel[b]; });
    double wsum = 0;
    for (int64_t j = 0; j < k; ++j) wsum += s[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      EXPECT_EQ(idx[t * k + j], order[j]);
      double want = (c.norm_topk && k > 1) ? s[order[j]] / wsum : s[order[j]];
      EXPECT_NEAR(w[t * k + j], want, 1e-6);
    }
  }
}

TEST_P(RouterTest, BackwardMatchesFiniteDifferences) {
  auto c = GetParam();
  const int64_t T = 5, E = 6, k = c.k;
  // Well separated logits so a small perturbation never changes the top-k choice.
  std::vector<float> logits(T * E);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) logits[t * E + e] = 0.8f * float((e * 7 + t * 3) % E) - 2.0f;
  auto bias = random_vector(E, 3, 0.01f);
  auto Rw = random_vector(T * k, 4), Rp = random_vector(T * E, 5), Rl = random_vector(T, 6);
  auto loss = [&]() {
    std::vector<float> s(T * E), p(T * E), lse(T), w(T * k);
    std::vector<int32_t> idx(T * k);
    router_forward(logits.data(), c.bias ? bias.data() : nullptr, T, E, k, c.sigmoid, c.norm_topk, s.data(), p.data(),
                   lse.data(), idx.data(), w.data());
    double v = 0;
    for (int64_t i = 0; i < T * k; ++i) v += double(w[i]) * Rw[i];
    for (int64_t i = 0; i < T * E; ++i) v += double(p[i]) * Rp[i];
    for (int64_t i = 0; i < T; ++i) v += double(lse[i]) * Rl[i];
    return v;
  };
  std::vector<float> s(T * E), p(T * E), lse(T), w(T * k), dl(T * E);
  std::vector<int32_t> idx(T * k);
  router_forward(logits.data(), c.bias ? bias.data() : nullptr, T, E, k, c.sigmoid, c.norm_topk, s.data(), p.data(),
                 lse.data(), idx.data(), w.data());
  router_backward(logits.data(), s.data(), p.data(), lse.data(), idx.data(), Rw.data(), Rp.data(), Rl.data(), T, E, k,
                  c.sigmoid, c.norm_topk, dl.data());
  test::expect_grad_close(logits, dl, loss, 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Variants, RouterTest,
                         ::testing::Values(RouterCase{false, true, false, 2}, RouterCase{false, false, false, 2},
                                           RouterCase{true, true, false, 3}, RouterCase{true, false, true, 2},
                                           RouterCase{false, true, true, 1}, RouterCase{true, true, true, 1}),
                         [](const auto& info) {
                           std::ostringstream os;
                           PrintTo(info.param, &os);
                           return os.str();
                         });

TEST(MoeOrder, StableCountingSortAndCapacityDropsLaterTokens) {
  const int64_t T = 6, k = 2, E = 3;
  // token t chooses experts idx[t*2], idx[t*2+1]
  std::vector<int32_t> idx = {0, 1, 0, 2, 0, 1, 1, 2, 0, 2, 1, 0};
  std::vector<int64_t> counts(E), offsets(E + 1), slot(T * k);
  std::vector<int32_t> row_token(T * k);
  std::vector<int64_t> cap(E, 3);
  int64_t rows = moe_order(idx.data(), T, k, E, cap.data(), counts.data(), offsets.data(), slot.data(),
                           row_token.data());
  EXPECT_EQ(counts, (std::vector<int64_t>{5, 4, 3}));  // before dropping
  EXPECT_EQ(offsets, (std::vector<int64_t>{0, 3, 6, 9}));
  EXPECT_EQ(rows, 9);
  // expert 0 keeps tokens 0, 1, 2 (first come first served); tokens 4 and 5 are dropped for expert 0
  EXPECT_EQ(std::vector<int32_t>(row_token.begin(), row_token.begin() + 3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(slot[4 * k + 0], -1);
  EXPECT_EQ(slot[5 * k + 1], -1);
  // expert 1: tokens 0, 2, 3 kept, token 5 dropped
  EXPECT_EQ(std::vector<int32_t>(row_token.begin() + 3, row_token.begin() + 6), (std::vector<int32_t>{0, 2, 3}));
  EXPECT_EQ(slot[5 * k + 0], -1);
  // dropless keeps all
  rows = moe_order(idx.data(), T, k, E, nullptr, counts.data(), offsets.data(), slot.data(), row_token.data());
  EXPECT_EQ(rows, T * k);
  for (auto s : slot) EXPECT_GE(s, 0);
}

// Chunk-major rows: experts of 5, 0 and 3 rows in 2 chunks -> (c0: e0 rows 0-1, e2 row 0),
// (c1: e0 rows 2-4, e2 rows 1-2); row_token follows its rows and every slot its row.
TEST(MoeOrder, ChunkMajorRowsKeepEveryCopyWithItsRow) {
  const int64_t E = 3, C = 2;
  const std::vector<int64_t> offsets = {0, 5, 5, 8};
  std::vector<int64_t> chunk(C * E + 1);
  moe_chunk_offsets(offsets.data(), E, C, chunk.data());
  EXPECT_EQ(chunk, (std::vector<int64_t>{0, 2, 2, 3, 6, 6, 8}));
  std::vector<int32_t> row_token = {10, 11, 12, 13, 14, 20, 21, 22};  // expert-major
  std::vector<int64_t> slot = {7, -1, 0, 4, 5, 2};
  moe_to_chunk_major(offsets.data(), chunk.data(), E, C, row_token.data(), slot.data(), int64_t(slot.size()));
  EXPECT_EQ(row_token, (std::vector<int32_t>{10, 11, 20, 12, 13, 14, 21, 22}));
  EXPECT_EQ(slot, (std::vector<int64_t>{7, -1, 0, 5, 2, 3}));
  // one chunk: the identity
  std::vector<int64_t> one(E + 1);
  moe_chunk_offsets(offsets.data(), E, 1, one.data());
  EXPECT_EQ(one, offsets);
}

TEST(MoeOrder, GatherUnorderRoundTripAndBackward) {
  const int64_t T = 5, k = 2, E = 3, D = 4;
  std::vector<int32_t> idx = {2, 0, 1, 0, 2, 1, 0, 2, 1, 2};
  std::vector<int64_t> counts(E), offsets(E + 1), slot(T * k);
  std::vector<int32_t> row_token(T * k);
  std::vector<int64_t> cap(E, 2);
  int64_t rows = moe_order(idx.data(), T, k, E, cap.data(), counts.data(), offsets.data(), slot.data(), row_token.data());
  auto x = random_vector(T * D, 1), w = random_vector(T * k, 2), dy = random_vector(T * D, 3);
  std::vector<float> xs(rows * D), y(T * D), dye(rows * D), dw(T * k), dx(T * D);
  moe_gather(x.data(), row_token.data(), rows, D, xs.data());
  moe_unorder_forward(xs.data(), slot.data(), w.data(), T, k, D, y.data());  // experts = identity
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) {
      double want = 0;
      for (int64_t j = 0; j < k; ++j)
        if (slot[t * k + j] >= 0) want += w[t * k + j] * x[t * D + i];
      EXPECT_NEAR(y[t * D + i], want, 1e-6);
    }
  moe_unorder_backward(dy.data(), xs.data(), slot.data(), w.data(), T, k, D, dye.data(), dw.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      double want = 0;
      if (slot[t * k + j] >= 0)
        for (int64_t i = 0; i < D; ++i) want += dy[t * D + i] * x[t * D + i];
      EXPECT_NEAR(dw[t * k + j], want, 1e-5);
    }
  moe_gather_backward(dye.data(), slot.data(), T, k, D, dx.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) {
      double want = 0;
      for (int64_t j = 0; j < k; ++j)
        if (slot[t * k + j] >= 0) want += w[t * k + j] * dy[t * D + i];
      EXPECT_NEAR(dx[t * D + i], want, 1e-5);
    }
}

}  // namespace moe
