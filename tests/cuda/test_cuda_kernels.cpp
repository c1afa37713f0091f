// Every CUDA kernel against its CPU twin (kernels/cpu/), on random inputs, with fp32 tolerances
// (bf16 GEMM: bf16 tolerance). Skipped at run time where no CUDA device can be used, so the CUDA
// build is compiled and linked everywhere (CI) and checked where a GPU is lent.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/device.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_order.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"
#include "test_util.h"

namespace moe {
namespace {

TEST(CudaKernels, ElementwiseAndGlobalNorm) {
  REQUIRE_GPU();
  for (const int64_t n : {int64_t(100003), int64_t(100000)}) {  // plain and float4 paths
    auto a = random_vector(n, 1), b = random_vector(n, 2);
    DeviceArray<float> da(a), db(b), dout{size_t(n)};
    cuda::add(da.data(), db.data(), dout.data(), n);
    std::vector<float> out(n);
    add(a.data(), b.data(), out.data(), n);
    expect_close(down(dout), out, 0, 0, "add");
    cuda::add_inplace(da.data(), db.data(), n);
    cuda::scale_inplace(da.data(), n, 0.5f);
    add_inplace(a.data(), b.data(), n);
    scale_inplace(a.data(), n, 0.5f);
    expect_close(down(da), a, 0, 0, "add_inplace, scale_inplace");
    const float* tensors[2] = {da.data(), db.data()};
    const int64_t sizes[2] = {n, n - 7};
    EXPECT_NEAR(cuda::sum_squares_many(tensors, sizes, 2), sum_squares(a.data(), n) + sum_squares(b.data(), n - 7),
                1e-9 * sum_squares(a.data(), n));
  }
}

TEST(CudaKernels, SwiGluRopeEmbeddingRmsNorm) {
  REQUIRE_GPU();
  const int64_t B = 2, S = 37, H = 3, hd = 16, n = B * S * H * hd;
  auto g = random_vector(n, 3), u = random_vector(n, 4), dh = random_vector(n, 5);
  DeviceArray<float> dg(g), du(u), ddh(dh), h{size_t(n)}, dgo{size_t(n)}, duo{size_t(n)};
  std::vector<float> hc(n), dgc(n), duc(n);
  cuda::swiglu_forward(dg.data(), du.data(), h.data(), n);
  cuda::swiglu_backward(dg.data(), du.data(), ddh.data(), dgo.data(), duo.data(), n);
  swiglu_forward(g.data(), u.data(), hc.data(), n);
  swiglu_backward(g.data(), u.data(), dh.data(), dgc.data(), duc.data(), n);
  expect_close(down(h), hc, 1e-5, 1e-6, "swiglu forward");
  expect_close(down(dgo), dgc, 1e-5, 1e-6, "swiglu backward dg");
  expect_close(down(duo), duc, 1e-5, 1e-6, "swiglu backward du");
  cuda::swiglu_backward(dg.data(), du.data(), ddh.data(), dg.data(), du.data(), n);  // in place, as the model calls it
  expect_close(down(dg), dgc, 1e-5, 1e-6, "swiglu backward dg in place");
  expect_close(down(du), duc, 1e-5, 1e-6, "swiglu backward du in place");

  DeviceArray<float> x(g);
  cuda::rope_forward(x.data(), B, S, H, hd, 10000.0);
  std::vector<float> xc = g;
  rope_forward(xc.data(), B, S, H, hd, 10000.0);
  expect_close(down(x), xc, 1e-5, 1e-5, "rope forward");
  cuda::rope_backward(x.data(), B, S, H, hd, 10000.0);
  rope_backward(xc.data(), B, S, H, hd, 10000.0);
  expect_close(down(x), xc, 1e-5, 1e-5, "rope backward");

  const int64_t V = 50, T = 64;
  for (const int64_t D : {int64_t(24), int64_t(23)}) {  // rows as float4, and as floats
    std::vector<int32_t> tokens(T);
    for (int64_t t = 0; t < T; ++t) tokens[t] = t % 9 == 0 ? -1 : int32_t((t * 7) % V);
    auto table = random_vector(V * D, 6), dout = random_vector(T * D, 7);
    DeviceArray<int32_t> dtok(tokens);
    DeviceArray<float> dtable(table), emb{size_t(T * D)}, ddout(dout), dgrad(std::vector<float>(V * D, 0.5f));
    cuda::embedding_forward(dtok.data(), dtable.data(), emb.data(), T, D);
    cuda::embedding_backward(dtok.data(), ddout.data(), dgrad.data(), T, D);
    std::vector<float> embc(T * D), gradc(V * D, 0.5f);
    embedding_forward(tokens.data(), table.data(), embc.data(), T, D);
    embedding_backward(tokens.data(), dout.data(), gradc.data(), T, D);
    expect_close(down(emb), embc, 0, 0, "embedding forward");
    expect_close(down(dgrad), gradc, 1e-5, 1e-6, "embedding backward");
  }

  // RMSNorm rows wider than a warp and than the block (200 = 6 full warps + a partial one; 300 > 256)
  for (const int64_t Dn : {int64_t(200), int64_t(300)}) {
    auto xs = random_vector(T * Dn, 8), w = random_vector(Dn, 9), dy = random_vector(T * Dn, 10);
    DeviceArray<float> dx_in(xs), dw_in(w), ddy(dy), y{size_t(T * Dn)}, rstd{size_t(T)}, dxo{size_t(T * Dn)},
        dwo(std::vector<float>(Dn, 0.25f));
    cuda::rms_norm_forward(dx_in.data(), dw_in.data(), y.data(), rstd.data(), T, Dn, 1e-5f);
    cuda::rms_norm_backward(dx_in.data(), dw_in.data(), rstd.data(), ddy.data(), dxo.data(), dwo.data(), T, Dn);
    std::vector<float> yc(T * Dn), rstdc(T), dxc(T * Dn), dwc(Dn, 0.25f);
    rms_norm_forward(xs.data(), w.data(), yc.data(), rstdc.data(), T, Dn, 1e-5f);
    rms_norm_backward(xs.data(), w.data(), rstdc.data(), dy.data(), dxc.data(), dwc.data(), T, Dn);
    expect_close(down(y), yc, 1e-5, 1e-6, "rms_norm forward");
    expect_close(down(dxo), dxc, 1e-4, 1e-5, "rms_norm backward dx");
    expect_close(down(dwo), dwc, 1e-4, 1e-4, "rms_norm backward dw");
  }
}

class CudaRouter : public ::testing::TestWithParam<std::tuple<bool, bool, int>> {};

TEST_P(CudaRouter, ForwardAndBackwardMatchTheCpu) {
  REQUIRE_GPU();
  const auto [sigmoid, norm_topk, k] = GetParam();
  const int64_t T = 300, E = 16;
  auto logits = random_vector(T * E, 11, 2.0f), bias = random_vector(E, 12, 0.1f);
  auto dweights = random_vector(T * k, 13), dprobs = random_vector(T * E, 14), dlse = random_vector(T, 15);
  std::vector<float> s(T * E), p(T * E), lse(T), w(T * k), dl(T * E);
  std::vector<int32_t> idx(T * k);
  router_forward(logits.data(), bias.data(), T, E, k, sigmoid, norm_topk, s.data(), p.data(), lse.data(), idx.data(),
                 w.data());
  router_backward(logits.data(), s.data(), p.data(), lse.data(), idx.data(), dweights.data(), dprobs.data(),
                  dlse.data(), T, E, k, sigmoid, norm_topk, dl.data());
  DeviceArray<float> dlog(logits), dbias(bias), ds{size_t(T * E)}, dp{size_t(T * E)}, dlse_o{size_t(T)},
      dw{size_t(T * k)}, ddw(dweights), ddp(dprobs), ddlse(dlse), ddl{size_t(T * E)};
  DeviceArray<int32_t> didx{size_t(T * k)};
  cuda::router_forward(dlog.data(), dbias.data(), T, E, k, sigmoid, norm_topk, ds.data(), dp.data(), dlse_o.data(),
                       didx.data(), dw.data());
  cuda::router_backward(dlog.data(), ds.data(), dp.data(), dlse_o.data(), didx.data(), ddw.data(), ddp.data(),
                        ddlse.data(), T, E, k, sigmoid, norm_topk, ddl.data());
  EXPECT_EQ(didx.download(), idx);
  expect_close(down(ds), s, 1e-5, 1e-7, "scores");
  expect_close(down(dp), p, 1e-5, 1e-7, "probs");
  expect_close(down(dlse_o), lse, 1e-5, 1e-6, "lse");
  expect_close(down(dw), w, 1e-5, 1e-7, "weights");
  expect_close(down(ddl), dl, 1e-4, 1e-6, "dlogits");
}

INSTANTIATE_TEST_SUITE_P(ScoreNormK, CudaRouter,
                         ::testing::Values(std::make_tuple(false, true, 2), std::make_tuple(false, false, 1),
                                           std::make_tuple(true, true, 4), std::make_tuple(true, false, 2)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param) ? "sigmoid" : "softmax") +
                                  (std::get<1>(info.param) ? "_norm" : "_raw") + "_top" +
                                  std::to_string(std::get<2>(info.param));
                         });

TEST(CudaKernels, OrderGatherUnorderWithAndWithoutCapacity) {
  REQUIRE_GPU();
  const int64_t T = 777, k = 2, E = 8;
  std::vector<int32_t> idx(T * k);
  for (int64_t t = 0; t < T; ++t) {
    idx[t * k] = int32_t((t * 5 + t / 3) % E);
    idx[t * k + 1] = int32_t((idx[t * k] + 1 + t % 3) % E);
  }
  std::vector<int64_t> cap(E, 150);
  for (const int64_t D : {int64_t(20), int64_t(21)})  // rows as float4, and as floats
    for (const int64_t* capacity : {static_cast<const int64_t*>(nullptr), static_cast<const int64_t*>(cap.data())}) {
      std::vector<int64_t> counts(E), offsets(E + 1), slot(T * k), gcounts(E), goffsets(E + 1);
      std::vector<int32_t> row_token(T * k);
      const int64_t n = moe_order(idx.data(), T, k, E, capacity, counts.data(), offsets.data(), slot.data(),
                                  row_token.data());
      DeviceArray<int32_t> didx(idx), drow{size_t(T * k)};
      DeviceArray<int64_t> dslot{size_t(T * k)};
      const int64_t gn = cuda::moe_order(didx.data(), T, k, E, capacity, gcounts.data(), goffsets.data(), dslot.data(),
                                         drow.data());
      ASSERT_EQ(gn, n);
      EXPECT_EQ(gcounts, counts);
      EXPECT_EQ(goffsets, offsets);
      EXPECT_EQ(dslot.download(), slot);
      auto grow = drow.download();
      EXPECT_TRUE(std::equal(row_token.begin(), row_token.begin() + n, grow.begin()));

      auto x = random_vector(T * D, 16), ye = random_vector(n * D, 17), wts = random_vector(T * k, 18),
           dy = random_vector(T * D, 19);
      std::vector<float> xs(n * D), dx(T * D), y(T * D), dye(n * D), dw(T * k);
      moe_gather(x.data(), row_token.data(), n, D, xs.data());
      moe_gather_backward(ye.data(), slot.data(), T, k, D, dx.data());
      moe_unorder_forward(ye.data(), slot.data(), wts.data(), T, k, D, y.data());
      moe_unorder_backward(dy.data(), ye.data(), slot.data(), wts.data(), T, k, D, dye.data(), dw.data());
      DeviceArray<float> dx_in(x), dye_in(ye), dwts(wts), ddy(dy), gxs{size_t(n * D)}, gdx{size_t(T * D)},
          gy{size_t(T * D)}, gdye{size_t(n * D)}, gdw{size_t(T * k)};
      cuda::moe_gather(dx_in.data(), drow.data(), n, D, gxs.data());
      cuda::moe_gather_backward(dye_in.data(), dslot.data(), T, k, D, gdx.data());
      cuda::moe_unorder_forward(dye_in.data(), dslot.data(), dwts.data(), T, k, D, gy.data());
      cuda::moe_unorder_backward(ddy.data(), dye_in.data(), dslot.data(), dwts.data(), T, k, D, gdye.data(), gdw.data());
      expect_close(down(gxs), xs, 0, 0, "gather");
      expect_close(down(gdx), dx, 1e-6, 1e-6, "gather backward");
      expect_close(down(gy), y, 1e-5, 1e-6, "unorder forward");
      expect_close(down(gdye), dye, 1e-6, 1e-7, "unorder backward dye");
      expect_close(down(gdw), dw, 1e-4, 1e-5, "unorder backward dw");
      // in place (dye over ye), as the model calls it
      cuda::moe_unorder_backward(ddy.data(), dye_in.data(), dslot.data(), dwts.data(), T, k, D, dye_in.data(), gdw.data());
      expect_close(down(dye_in), dye, 1e-6, 1e-7, "unorder backward dye in place");
      expect_close(down(gdw), dw, 1e-4, 1e-5, "unorder backward dw in place");
      // chunk-major rows (3 chunks; experts with fewer rows than chunks included) against the CPU
      for (const int64_t C : {int64_t(3), int64_t(160)}) {
        std::vector<int64_t> chunks(C * E + 1), cslot = slot;
        std::vector<int32_t> crow(row_token.begin(), row_token.begin() + n);
        moe_chunk_offsets(offsets.data(), E, C, chunks.data());
        moe_to_chunk_major(offsets.data(), chunks.data(), E, C, crow.data(), cslot.data(), T * k);
        DeviceArray<int32_t> grow2(std::vector<int32_t>(row_token.begin(), row_token.begin() + n));
        DeviceArray<int64_t> gslot2(slot);
        cuda::moe_to_chunk_major(offsets.data(), chunks.data(), E, C, grow2.data(), gslot2.data(), T * k);
        EXPECT_EQ(grow2.download(), crow) << C << " chunks";
        EXPECT_EQ(gslot2.download(), cslot) << C << " chunks";
      }
    }
}

TEST(CudaKernels, AdamWOneTensorAndAllTensorsInOneLaunch) {
  REQUIRE_GPU();
  const std::vector<int64_t> sizes = {1, 1000, 40000, 16384};
  std::vector<std::vector<float>> p, g, m, v;
  std::vector<DeviceArray<float>> dp, dg, dm, dv;
  for (size_t i = 0; i < sizes.size(); ++i) {
    p.push_back(random_vector(sizes[i], 30 + i));
    g.push_back(random_vector(sizes[i], 40 + i));
    m.push_back(random_vector(sizes[i], 50 + i, 0.1f));
    auto vi = random_vector(sizes[i], 60 + i, 0.1f);
    for (auto& x : vi) x = x * x;
    v.push_back(vi);
    dp.emplace_back(p[i]);
    dg.emplace_back(g[i]);
    dm.emplace_back(m[i]);
    dv.emplace_back(v[i]);
  }
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, bc1 = 0.19f, bc2 = 0.0975f, clip = 0.5f;
  std::vector<cuda::AdamWTensor> tensors;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const float wd = i % 2 ? 0.1f : 0.0f;
    tensors.push_back({dp[i].data(), dg[i].data(), dm[i].data(), dv[i].data(), nullptr, sizes[i], wd});
    std::vector<float> scaled = g[i];
    for (auto& x : scaled) x *= clip;
    adamw_update(p[i].data(), scaled.data(), m[i].data(), v[i].data(), sizes[i], lr, b1, b2, eps, wd, bc1, bc2);
  }
  cuda::adamw_update_many(tensors.data(), int(tensors.size()), lr, b1, b2, eps, bc1, bc2, clip);
  for (size_t i = 0; i < sizes.size(); ++i) {
    expect_close(dp[i].download(), p[i], 1e-6, 1e-7, "adamw_update_many p");
    expect_close(dm[i].download(), m[i], 1e-6, 1e-8, "adamw_update_many m");
    expect_close(dv[i].download(), v[i], 1e-6, 1e-9, "adamw_update_many v");
  }
  cuda::adamw_update(dp[1].data(), dg[1].data(), dm[1].data(), dv[1].data(), sizes[1], lr, b1, b2, eps, 0.1f, bc1, bc2);
  adamw_update(p[1].data(), g[1].data(), m[1].data(), v[1].data(), sizes[1], lr, b1, b2, eps, 0.1f, bc1, bc2);
  expect_close(dp[1].download(), p[1], 1e-6, 1e-7, "adamw_update p");
}

struct AttnShape {
  int64_t B, S, H, Hkv, hd;
};
class CudaAttention : public ::testing::TestWithParam<AttnShape> {};

TEST_P(CudaAttention, BlockedAndFusedMatchTheCpu) {
  REQUIRE_GPU();
  const AttnShape s = GetParam();
  const int64_t nq = s.B * s.S * s.H * s.hd, nkv = s.B * s.S * s.Hkv * s.hd, nl = s.B * s.H * s.S;
  auto q = random_vector(nq, 70), k = random_vector(nkv, 71), v = random_vector(nkv, 72), dout = random_vector(nq, 73);
  std::vector<float> out(nq), lse(nl), dq(nq), dk(nkv), dv(nkv);
  attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), s.B, s.S, s.H, s.Hkv, s.hd);
  attention_backward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                     s.B, s.S, s.H, s.Hkv, s.hd);
  const float nan = std::numeric_limits<float>::quiet_NaN();  // every output element must be written
  const bool fused_fits = s.hd == 32 || s.hd == 64 || s.hd == 128;
  // fp32 blocked, bf16 blocked, bf16 fused (where it takes the head dim), and the two mixes (either
  // backward after either forward, as choose_attention_kernel may pick)
  using cuda::AttentionKernel;
  const std::pair<AttentionKernel, AttentionKernel> modes[] = {
      {AttentionKernel::kBlocked, AttentionKernel::kBlocked}, {AttentionKernel::kBlocked, AttentionKernel::kBlocked},
      {AttentionKernel::kFused, AttentionKernel::kFused},     {AttentionKernel::kFused, AttentionKernel::kBlocked},
      {AttentionKernel::kBlocked, AttentionKernel::kFused}};
  const char* names[] = {"fp32 blocked", "bf16 blocked", "fused", "fused forward, blocked backward",
                         "blocked forward, fused backward"};
  for (int mode = 0; mode < 5; ++mode) {
    const bool bf16 = mode > 0;
    const auto [kernel, bwd_kernel] = modes[mode];
    if (mode > 2 && !fused_fits) continue;
    if (mode == 2 && !fused_fits) {
      DeviceArray<float> gq(q);
      EXPECT_NE(test::error_of([&] {
                  cuda::attention_forward(gq.data(), gq.data(), gq.data(), gq.data(), gq.data(), s.B, s.S, s.H,
                                          s.Hkv, s.hd, true, kernel);
                }).find("head_dim"),
                std::string::npos);
      continue;
    }
    SCOPED_TRACE(names[mode]);
    DeviceArray<float> gq(q), gk(k), gv(v), gdout(dout), gout(std::vector<float>(nq, nan)),
        glse(std::vector<float>(nl, nan)), gdq(std::vector<float>(nq, nan)), gdk(std::vector<float>(nkv, nan)),
        gdv(std::vector<float>(nkv, nan));
    cuda::attention_forward(gq.data(), gk.data(), gv.data(), gout.data(), glse.data(), s.B, s.S, s.H, s.Hkv, s.hd,
                            bf16, kernel);
    cuda::attention_backward(gq.data(), gk.data(), gv.data(), gout.data(), glse.data(), gdout.data(), gdq.data(),
                             gdk.data(), gdv.data(), s.B, s.S, s.H, s.Hkv, s.hd, bf16, bwd_kernel);
    if (!bf16) {
      expect_close(down(gout), out, 1e-4, 1e-5, "attention out");
      expect_close(down(glse), lse, 1e-5, 1e-5, "attention lse");
      expect_close(down(gdq), dq, 1e-3, 1e-4, "attention dq");
      expect_close(down(gdk), dk, 1e-3, 1e-4, "attention dk");
      expect_close(down(gdv), dv, 1e-3, 1e-4, "attention dv");
      continue;
    }
    // bf16 operands: relative errors of bf16 rounding (under 1e-2), never NaN
    const std::pair<const char*, double> errors[] = {
        {"out", test::relative_error(down(gout), out)}, {"lse", test::relative_error(down(glse), lse)},
        {"dq", test::relative_error(down(gdq), dq)},    {"dk", test::relative_error(down(gdk), dk)},
        {"dv", test::relative_error(down(gdv), dv)}};
    for (const auto& [what, err] : errors) EXPECT_LT(err, 1e-2) << "bf16 attention " << what;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaAttention,
                         ::testing::Values(AttnShape{2, 100, 4, 4, 32}, AttnShape{1, 129, 8, 2, 64},
                                           AttnShape{1, 64, 2, 1, 128}, AttnShape{2, 600, 4, 2, 64},
                                           AttnShape{1, 200, 2, 1, 128},
                                           AttnShape{3, 8, 4, 2, 4}),
                         [](const auto& info) {
                           const AttnShape& a = info.param;
                           return "B" + std::to_string(a.B) + "_S" + std::to_string(a.S) + "_H" + std::to_string(a.H) +
                                  "_Hkv" + std::to_string(a.Hkv) + "_hd" + std::to_string(a.hd);
                         });

// The per-direction choice: both implementations timed, the fused one agreeing with the blocked
// one within bf16 rounding, and each direction naming the faster of the two.
TEST(CudaKernels, AttentionChoicePerDirection) {
  REQUIRE_GPU();
  const cuda::AttentionChoice c = cuda::choose_attention_kernel(2, 100, 4, 2, 64);
  for (double ms : {c.blocked_fwd_ms, c.blocked_bwd_ms, c.fused_fwd_ms, c.fused_bwd_ms}) EXPECT_GT(ms, 0.0);
  EXPECT_LT(c.fused_fwd_rel_error, 2e-2);
  EXPECT_LT(c.fused_bwd_rel_error, 2e-2);
  EXPECT_EQ(c.forward == cuda::AttentionKernel::kFused, c.fused_fwd_ms < c.blocked_fwd_ms);
  EXPECT_EQ(c.backward == cuda::AttentionKernel::kFused, c.fused_bwd_ms < c.blocked_bwd_ms);
  const cuda::AttentionChoice odd = cuda::choose_attention_kernel(1, 50, 2, 2, 48);  // no fused kernel for 48
  EXPECT_EQ(odd.forward, cuda::AttentionKernel::kBlocked);
  EXPECT_EQ(odd.backward, cuda::AttentionKernel::kBlocked);
  EXPECT_EQ(odd.fused_fwd_ms, 0.0);
}

TEST(CudaKernels, OutOfMemorySaysWhatToChange) {
  REQUIRE_GPU();
  const size_t huge = size_t(1) << 50;  // 1 PiB
  for (bool in_stream_order : {false, true}) {
    const std::string msg = test::error_of([&] {
      void* p = in_stream_order ? cuda::stream_alloc(huge, nullptr) : cuda::device_alloc(huge);
      cuda::device_free(p);
    });
    EXPECT_NE(msg.find("GPU out of memory"), std::string::npos) << msg;
    EXPECT_NE(msg.find("train.micro_batch"), std::string::npos) << msg;
  }
  DeviceArray<float> still_works(std::vector<float>{1.0f, 2.0f});  // the error is not sticky
  EXPECT_EQ(still_works.download()[1], 2.0f);
}

TEST(CudaKernels, GemmsDenseGroupedAndBf16) {
  REQUIRE_GPU();
  const int64_t M = 67, N = 48, K = 40;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto A = random_vector(M * K, 80), B = random_vector(K * N, 81), C = random_vector(M * N, 82);
      std::vector<float> ref = C;
      gemm(ta, tb, M, N, K, 0.7f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.3f, ref.data(), N);
      DeviceArray<float> dA(A), dB(B), dC(C);
      cuda::gemm(ta, tb, M, N, K, 0.7f, dA.data(), ta ? M : K, dB.data(), tb ? K : N, 0.3f, dC.data(), N);
      expect_close(down(dC), ref, 1e-4, 1e-5, "gemm");
    }
  // grouped: G = 6 groups over W = 3 weights, one empty group
  const int64_t G = 6, W = 3;
  std::vector<int64_t> offsets = {0, 10, 10, 35, 36, 50, 64};
  const int64_t rows = offsets.back();
  auto A = random_vector(rows * K, 83), Bw = random_vector(W * N * K, 84), dY = random_vector(rows * N, 85);
  std::vector<float> C(rows * N), dWc(W * N * K, 0.1f);
  gemm_grouped_rows(G, W, offsets.data(), true, N, K, 1.0f, A.data(), K, Bw.data(), N * K, K, 0.0f, C.data(), N);
  gemm_grouped_weight_grad(G, W, offsets.data(), N, K, dY.data(), N, A.data(), K, dWc.data(), N * K);
  const cuda::GroupedImpl impls[] = {cuda::GroupedImpl::kGroupedCall, cuda::GroupedImpl::kPerGroup};
  for (cuda::GroupedImpl impl : impls) {
    DeviceArray<float> dA(A), dB(Bw), dC{size_t(rows * N)}, ddY(dY), ddW(std::vector<float>(W * N * K, 0.1f));
    cuda::gemm_grouped_rows(G, W, offsets.data(), true, N, K, 1.0f, dA.data(), K, dB.data(), N * K, K, 0.0f,
                            dC.data(), N, impl);
    cuda::gemm_grouped_weight_grad(G, W, offsets.data(), N, K, ddY.data(), N, dA.data(), K, ddW.data(), N * K, impl);
    expect_close(down(dC), C, 1e-4, 1e-5, "gemm_grouped_rows");
    expect_close(down(ddW), dWc, 1e-4, 1e-5, "gemm_grouped_weight_grad");
  }

  // bf16: inputs rounded to bf16 on the host, the product compared with the fp32 product of the
  // rounded inputs (fp32 accumulation on both sides)
  auto A2 = random_vector(M * K, 86), B2 = random_vector(N * K, 87);
  auto a16 = to_bf16_bits(A2), b16 = to_bf16_bits(B2);
  auto ar = from_bf16_bits(a16), br = from_bf16_bits(b16);
  std::vector<float> ref(M * N);
  gemm(false, true, M, N, K, 1.0f, ar.data(), K, br.data(), K, 0.0f, ref.data(), N);
  DeviceArray<uint16_t> dA16(a16), dB16(b16);
  DeviceArray<float> dC32{size_t(M * N)};
  cuda::gemm_bf16(false, true, M, N, K, 1.0f, dA16.data(), K, dB16.data(), K, 0.0f, dC32.data(), N, false);
  expect_close(down(dC32), ref, 1e-3, 1e-3, "gemm_bf16");

  // to_bf16 on the device rounds as the host helper does; grouped bf16 GEMMs against the CPU's
  // fp32 grouped GEMMs of the rounded inputs
  DeviceArray<float> dA2(A2);
  DeviceArray<uint16_t> dA2_16{size_t(M * K)};
  cuda::to_bf16(dA2.data(), dA2_16.data(), M * K);
  EXPECT_EQ(dA2_16.download(), a16);
  DeviceArray<uint16_t> odd16(std::vector<uint16_t>(size_t(M * K), 0));  // an odd count: one at a time
  cuda::to_bf16(dA2.data(), odd16.data(), M * K - 1);
  const auto odd = odd16.download();
  EXPECT_TRUE(std::equal(odd.begin(), odd.end() - 1, a16.begin()));
  EXPECT_EQ(odd.back(), 0);
  auto Ag = random_vector(rows * K, 88), Bg = random_vector(W * N * K, 89), dYg = random_vector(rows * N, 90);
  auto Ag16 = to_bf16_bits(Ag), Bg16 = to_bf16_bits(Bg), dYg16 = to_bf16_bits(dYg);
  auto Agr = from_bf16_bits(Ag16), Bgr = from_bf16_bits(Bg16), dYgr = from_bf16_bits(dYg16);
  std::vector<float> Cg(rows * N), dWg(W * N * K, 0.0f);
  gemm_grouped_rows(G, W, offsets.data(), true, N, K, 1.0f, Agr.data(), K, Bgr.data(), N * K, K, 0.0f, Cg.data(), N);
  gemm_grouped_weight_grad(G, W, offsets.data(), N, K, dYgr.data(), N, Agr.data(), K, dWg.data(), N * K);
  for (cuda::GroupedImpl impl : impls) {
    DeviceArray<uint16_t> dAg(Ag16), dBg(Bg16), ddYg(dYg16);
    DeviceArray<float> dCg{size_t(rows * N)}, ddWg(std::vector<float>(W * N * K, 0.0f));
    cuda::gemm_grouped_rows_bf16(G, W, offsets.data(), true, N, K, 1.0f, dAg.data(), K, dBg.data(), N * K, K, 0.0f,
                                 dCg.data(), N, false, impl);
    cuda::gemm_grouped_weight_grad_bf16(G, W, offsets.data(), N, K, ddYg.data(), N, dAg.data(), K, ddWg.data(), N * K,
                                        impl);
    expect_close(down(dCg), Cg, 1e-3, 1e-3, "gemm_grouped_rows_bf16");
    expect_close(down(ddWg), dWg, 1e-3, 1e-3, "gemm_grouped_weight_grad_bf16");
  }
  {  // bf16 output (the experts' activations in bf16 training): the same values rounded to bf16
    DeviceArray<uint16_t> dAg(Ag16), dBg(Bg16), dC16{size_t(rows * N)};
    cuda::gemm_grouped_rows_bf16(G, W, offsets.data(), true, N, K, 1.0f, dAg.data(), K, dBg.data(), N * K, K, 0.0f,
                                 dC16.data(), N, true);
    expect_close(from_bf16_bits(dC16.download()), Cg, 8e-3, 1e-3, "gemm_grouped_rows_bf16 with bf16 output");
  }
  {  // SwiGLU on bf16 activations against the CPU on the same (rounded) values, forward and in place backward
    auto g = random_vector(rows * N, 91), u = random_vector(rows * N, 92), dh = random_vector(rows * N, 93);
    auto g16 = to_bf16_bits(g), u16 = to_bf16_bits(u), dh16 = to_bf16_bits(dh);
    auto gr = from_bf16_bits(g16), ur = from_bf16_bits(u16), dhr = from_bf16_bits(dh16);
    std::vector<float> h(gr.size()), dg(gr.size()), du(gr.size());
    swiglu_forward(gr.data(), ur.data(), h.data(), int64_t(gr.size()));
    swiglu_backward(gr.data(), ur.data(), dhr.data(), dg.data(), du.data(), int64_t(gr.size()));
    DeviceArray<uint16_t> dg16(g16), du16(u16), ddh16(dh16), dh16out{g16.size()};
    cuda::swiglu_forward_bf16(dg16.data(), du16.data(), dh16out.data(), int64_t(g16.size()));
    cuda::swiglu_backward_bf16(dg16.data(), du16.data(), ddh16.data(), dg16.data(), du16.data(), int64_t(g16.size()));
    expect_close(from_bf16_bits(dh16out.download()), h, 8e-3, 1e-4, "swiglu_forward_bf16");
    expect_close(from_bf16_bits(dg16.download()), dg, 8e-3, 1e-4, "swiglu_backward_bf16 dg");
    expect_close(from_bf16_bits(du16.download()), du, 8e-3, 1e-4, "swiglu_backward_bf16 du");
    // an odd count takes the one-at-a-time path (the above, pairs): same values on the first n - 1
    const int64_t odd = int64_t(g16.size()) - 1;
    DeviceArray<uint16_t> og16(g16), ou16(u16), oh16{g16.size()};
    cuda::swiglu_forward_bf16(og16.data(), ou16.data(), oh16.data(), odd);
    cuda::swiglu_backward_bf16(og16.data(), ou16.data(), ddh16.data(), og16.data(), ou16.data(), odd);
    const auto oh = oh16.download(), og = og16.download(), ou = ou16.download(), ph = dh16out.download(),
               pg = dg16.download(), pu = du16.download();
    EXPECT_TRUE(std::equal(oh.begin(), oh.begin() + odd, ph.begin()));
    EXPECT_TRUE(std::equal(og.begin(), og.begin() + odd, pg.begin()));
    EXPECT_TRUE(std::equal(ou.begin(), ou.begin() + odd, pu.begin()));
  }
  // the tuner measures both forms and names the faster
  const cuda::GroupedChoice choice = cuda::choose_grouped_impl(4, 512, 256, 128, true);
  for (int i = 0; i < 2; ++i) {
    EXPECT_GT(choice.rows_tflops[i], 0.0);
    EXPECT_GT(choice.weight_grad_tflops[i], 0.0);
  }
  EXPECT_EQ(choice.rows == cuda::GroupedImpl::kPerGroup, choice.rows_tflops[1] > choice.rows_tflops[0]);
}

// More groups than one launch writes pointers for (kPointersPerLaunch = 128 in gemm.cu): every
// group's product lands in its own rows, in both forms.
TEST(CudaKernels, GroupedGemmWithMoreGroupsThanOnePointerLaunch) {
  REQUIRE_GPU();
  const int64_t G = 300, N = 8, K = 16;
  std::vector<int64_t> offsets(size_t(G + 1), 0);
  for (int64_t g = 0; g < G; ++g) offsets[size_t(g + 1)] = offsets[size_t(g)] + (g * 7) % 5;  // some empty
  const int64_t rows = offsets.back();
  auto A = random_vector(rows * K, 94), Bw = random_vector(G * N * K, 95);
  std::vector<float> C(size_t(rows * N));
  gemm_grouped_rows(G, G, offsets.data(), true, N, K, 1.0f, A.data(), K, Bw.data(), N * K, K, 0.0f, C.data(), N);
  for (cuda::GroupedImpl impl : {cuda::GroupedImpl::kGroupedCall, cuda::GroupedImpl::kPerGroup}) {
    DeviceArray<float> dA(A), dB(Bw), dC(std::vector<float>(size_t(rows * N), NAN));
    cuda::gemm_grouped_rows(G, G, offsets.data(), true, N, K, 1.0f, dA.data(), K, dB.data(), N * K, K, 0.0f,
                            dC.data(), N, impl);
    expect_close(down(dC), C, 1e-4, 1e-5, "gemm_grouped_rows over 300 groups");
  }
}

}  // namespace
}  // namespace moe
