// The cross-entropy kernels and the fused LM head against their CPU twins, whole and with the
// vocabulary split over shards (tensor parallelism). Skipped at run time without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cuda/cuda_test_util.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/device.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "test_util.h"

namespace moe {
namespace {

// The LM head and cross-entropy on the CPU with the whole [T, V] logits: losses and the logit
// gradients (times grad_scale), then dh and dW from those gradients, rounded to bf16 first when
// round_dlogits (as the bf16 kernel rounds them for its two gradient GEMMs).
struct LmHeadReference {
  std::vector<float> logits, loss, dlogits, dh, dW;
};
LmHeadReference cpu_lm_head(const std::vector<float>& h, const std::vector<float>& W,
                            const std::vector<int32_t>& targets, int64_t T, int64_t D, int64_t V, float grad_scale,
                            bool round_dlogits) {
  LmHeadReference r;
  r.logits.resize(size_t(T * V));
  r.loss.resize(size_t(T));
  r.dh.assign(size_t(T * D), 0.0f);
  r.dW.assign(size_t(V * D), 0.0f);
  gemm(false, true, T, V, D, 1.0f, h.data(), D, W.data(), D, 0.0f, r.logits.data(), V);
  r.dlogits = r.logits;
  cross_entropy_forward_backward(r.logits.data(), targets.data(), T, V, r.loss.data(), r.dlogits.data(), grad_scale);
  const std::vector<float> dl = round_dlogits ? from_bf16_bits(to_bf16_bits(r.dlogits)) : r.dlogits;
  gemm(false, false, T, D, V, 1.0f, dl.data(), V, W.data(), D, 0.0f, r.dh.data(), D);
  gemm(true, false, V, D, T, 1.0f, dl.data(), V, h.data(), D, 0.0f, r.dW.data(), D);
  return r;
}

TEST(CudaKernels, CrossEntropyPiecesAndTheFusedLmHead) {
  REQUIRE_GPU();
  const int64_t T = 70, D = 32, V = 1000, chunk = 256;
  auto h = random_vector(T * D, 20), W = random_vector(V * D, 21, 0.2f);
  std::vector<int32_t> targets(T);
  for (int64_t t = 0; t < T; ++t) targets[t] = int32_t((t * 37) % V);
  const LmHeadReference ref = cpu_lm_head(h, W, targets, T, D, V, 1.0f / T, false);

  DeviceArray<int32_t> dtargets(targets);
  for (int64_t c : {chunk, V}) {  // chunks with a partial last one; one chunk (pass 2 reuses pass 1's logits)
    SCOPED_TRACE("chunk " + std::to_string(c));
    DeviceArray<float> dh_in(h), dW_in(W), gloss{size_t(T)}, gdh{size_t(T * D)}, gdW(std::vector<float>(V * D, 0.0f)),
        scratch{size_t(T * c)};
    cuda::lm_head_cross_entropy(dh_in.data(), dW_in.data(), dtargets.data(), T, D, V, c, 1.0f / T, gloss.data(),
                                gdh.data(), gdW.data(), scratch.data());
    expect_close(down(gloss), ref.loss, 1e-5, 1e-5, "fused LM head loss");
    expect_close(down(gdh), ref.dh, 1e-4, 1e-6, "fused LM head dh");
    expect_close(down(gdW), ref.dW, 1e-4, 1e-6, "fused LM head dW");
  }

  // the vocabulary-parallel pieces on full logits
  DeviceArray<float> dlog(ref.logits), rmax{size_t(T)}, sexp{size_t(T)}, tl{size_t(T)}, gl{size_t(T)}, gdl{size_t(T * V)};
  cuda::cross_entropy_row_max(dlog.data(), T, V, rmax.data());
  cuda::cross_entropy_sum_exp(dlog.data(), rmax.data(), T, V, sexp.data());
  cuda::cross_entropy_target_logit(dlog.data(), dtargets.data(), T, V, tl.data());
  cuda::cross_entropy_loss(rmax.data(), sexp.data(), tl.data(), T, gl.data());
  cuda::cross_entropy_backward(dlog.data(), dtargets.data(), rmax.data(), sexp.data(), T, V, 1.0f / T, gdl.data());
  expect_close(down(gl), ref.loss, 1e-5, 1e-5, "cross-entropy pieces: loss");
  expect_close(down(gdl), ref.dlogits, 1e-4, 1e-8, "cross-entropy pieces: dlogits");
}

// The bf16 fused LM head against the CPU on the same rounded operands: h and W rounded to bf16
// for the logits, the logit gradients rounded to bf16 for dh and dW (fp32 softmax, loss and
// accumulation on both sides); several chunks and one.
TEST(CudaKernels, FusedLmHeadInBf16) {
  REQUIRE_GPU();
  const int64_t T = 40, D = 32, V = 500, chunk = 192;
  const auto h16 = to_bf16_bits(random_vector(T * D, 24)), W16 = to_bf16_bits(random_vector(V * D, 25, 0.2f));
  const auto h = from_bf16_bits(h16), W = from_bf16_bits(W16);
  std::vector<int32_t> targets(T);
  for (int64_t t = 0; t < T; ++t) targets[t] = int32_t((t * 41) % V);
  const LmHeadReference ref = cpu_lm_head(h, W, targets, T, D, V, 1.0f / T, true);
  DeviceArray<int32_t> dtargets(targets);
  for (int64_t c : {chunk, V}) {
    SCOPED_TRACE("chunk " + std::to_string(c));
    DeviceArray<uint16_t> dh16(h16), dW16(W16), scratch16{size_t(T * c)};
    DeviceArray<float> gloss{size_t(T)}, gdh{size_t(T * D)}, gdW(std::vector<float>(V * D, 0.0f)),
        scratch{size_t(T * c)};
    cuda::lm_head_cross_entropy_bf16(dh16.data(), dW16.data(), dtargets.data(), T, D, V, c, 1.0f / T, gloss.data(),
                                     gdh.data(), gdW.data(), scratch.data(), scratch16.data());
    expect_close(down(gloss), ref.loss, 1e-4, 1e-5, "bf16 LM head loss");
    expect_close(down(gdh), ref.dh, 2e-3, 1e-5, "bf16 LM head dh");
    expect_close(down(gdW), ref.dW, 2e-3, 1e-5, "bf16 LM head dW");
  }
}

// The fused LM head with the vocabulary split in two shards (tensor parallelism), the all-reduces
// of its statistics played here: each shard's statistics captured, then each shard rerun with the
// other's folded in (max, cross_entropy_rescale_sum_exp, sums). Losses equal the whole vocabulary's,
// dh is the sum of the shards' parts and each dW its rows of the whole one.
TEST(CudaKernels, FusedLmHeadWithTheVocabularySplitOverTwoShards) {
  REQUIRE_GPU();
  const int64_t T = 50, D = 16, V = 600, half = V / 2, chunk = 128;
  auto h = random_vector(T * D, 22), W = random_vector(V * D, 23, 0.3f);
  std::vector<int32_t> targets(T);
  for (int64_t t = 0; t < T; ++t) targets[t] = int32_t((t * 53) % V);
  DeviceArray<float> dh_in(h), dW_in(W), loss{size_t(T)}, dh{size_t(T * D)}, dW(std::vector<float>(V * D, 0.0f)),
      scratch{size_t(T * chunk)};
  DeviceArray<int32_t> dtargets(targets);
  cuda::lm_head_cross_entropy(dh_in.data(), dW_in.data(), dtargets.data(), T, D, V, chunk, 0.5f, loss.data(), dh.data(),
                              dW.data(), scratch.data());
  const std::vector<float> whole_dW = down(dW);
  std::vector<float> stats[2][3], sum_dh(T * D, 0.0f);
  for (int pass = 0; pass < 2; ++pass)
    for (int s = 0; s < 2; ++s) {
      std::vector<int32_t> local(T);  // shard-local ids, -1 elsewhere
      for (int64_t t = 0; t < T; ++t) local[t] = targets[t] / half == s ? int32_t(targets[t] - s * half) : -1;
      DeviceArray<int32_t> dlocal(local);
      DeviceArray<float> W_s(std::vector<float>(W.begin() + s * half * D, W.begin() + (s + 1) * half * D)),
          l_s{size_t(T)}, dh_s{size_t(T * D)}, dW_s(std::vector<float>(half * D, 0.0f));
      const cuda::LmHeadStatsReduce reduce = [&](float* mx, float* se, float* tl) {
        float* dev[3] = {mx, se, tl};
        if (pass == 0) {  // capture this shard's statistics
          for (int i = 0; i < 3; ++i) {
            stats[s][i].resize(size_t(T));
            cuda::copy_to_host(stats[s][i].data(), dev[i], sizeof(float) * T);
          }
          return;
        }
        const auto& o = stats[1 - s];  // the other shard's, folded in as the all-reduces would
        std::vector<float> gmax(T);
        for (int64_t t = 0; t < T; ++t) gmax[t] = std::max(stats[s][0][t], o[0][t]);
        DeviceArray<float> dmax(gmax), omax(o[0]), ose(o[1]), otl(o[2]);
        cuda::cross_entropy_rescale_sum_exp(mx, dmax.data(), T, se);
        cuda::cross_entropy_rescale_sum_exp(omax.data(), dmax.data(), T, ose.data());
        cuda::add_inplace(se, ose.data(), T);
        cuda::add_inplace(tl, otl.data(), T);
        cuda::copy_on_device(mx, dmax.data(), sizeof(float) * T);
      };
      cuda::lm_head_cross_entropy(dh_in.data(), W_s.data(), dlocal.data(), T, D, half, chunk, 0.5f, l_s.data(),
                                  pass ? dh_s.data() : nullptr, dW_s.data(), scratch.data(), reduce);
      if (pass == 0) continue;
      expect_close(down(l_s), down(loss), 1e-5, 1e-5, "shard " + std::to_string(s) + " loss");
      expect_close(down(dW_s),
                   std::vector<float>(whole_dW.begin() + s * half * D, whole_dW.begin() + (s + 1) * half * D), 1e-4,
                   1e-7, "shard " + std::to_string(s) + " dW");
      const auto part = down(dh_s);
      for (int64_t i = 0; i < T * D; ++i) sum_dh[i] += part[i];
    }
  expect_close(sum_dh, down(dh), 1e-4, 1e-7, "sum of the shards' dh");
  // the rescaling against its CPU twin
  std::vector<float> from = random_vector(T, 24), to(T), se = random_vector(T, 25);
  for (int64_t t = 0; t < T; ++t) to[t] = from[t] + std::fabs(from[t]), se[t] = std::fabs(se[t]) + 1.0f;
  DeviceArray<float> dfrom(from), dto(to), dse(se);
  cuda::cross_entropy_rescale_sum_exp(dfrom.data(), dto.data(), T, dse.data());
  cross_entropy_rescale_sum_exp(from.data(), to.data(), T, se.data());
  expect_close(down(dse), se, 1e-6, 1e-7, "rescaled sums of exponentials");
}

}  // namespace
}  // namespace moe
