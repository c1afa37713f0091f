// The fused attention kernels of kernels/cuda/flash_attention.cuh, and the warp_mma.cuh blocks they
// are built from, run on the CPU through tests/emulation/ (no GPU needed) and checked against plain
// loops and the CPU attention (kernels/cpu/attention.cpp). tests/cuda/ runs the same kernels on a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "test_util.h"
// after every other header: the emulation turns CUDA qualifiers into plain C++
#include "emulation/cuda_emulation.h"
#include "kernels/cuda/flash_attention.cuh"

namespace moe {
namespace {

using bf16 = __nv_bfloat16;
namespace flash = cuda::flash;
unsigned char* const smem = emu::shared_buffer();  // what the kernels see as MOE_DYNAMIC_SMEM

std::vector<bf16> to_bf16(const std::vector<float>& x) {
  std::vector<bf16> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = __float2bfloat16(x[i]);
  return y;
}
std::vector<float> to_float(const std::vector<bf16>& x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = __bfloat162float(x[i]);
  return y;
}

// One warp: C = A B^T (rows_times_rows) and D = C_bf16 M (accumulators_to_a + a_times_tile) for
// random bf16 tiles, against plain loops over the same bf16 values.
TEST(EmulatedWarpMma, TileProductsMatchPlainLoops) {
  constexpr int K = 32, N = 16, W = 32, LDK = K + 8, LDW = W + 8;
  const auto a = to_float(to_bf16(test::random_vector(16 * K, 1))), b = to_float(to_bf16(test::random_vector(N * K, 2))),
             m = to_float(to_bf16(test::random_vector(N * W, 3)));
  std::vector<float> c(16 * N), d(16 * W);
  bf16* As = reinterpret_cast<bf16*>(smem);
  bf16* Bs = As + 16 * LDK;
  bf16* Ms = Bs + N * LDK;
  emu::launch({1, 1, 1}, 32, smem, (16 * LDK + N * LDK + N * LDW) * sizeof(bf16), [&] {
    if (threadIdx.x == 0) {  // plain stores into the padded tiles
      for (int r = 0; r < 16; ++r)
        for (int k = 0; k < K; ++k) As[r * LDK + k] = __float2bfloat16(a[size_t(r * K + k)]);
      for (int r = 0; r < N; ++r)
        for (int k = 0; k < K; ++k) Bs[r * LDK + k] = __float2bfloat16(b[size_t(r * K + k)]);
      for (int r = 0; r < N; ++r)
        for (int k = 0; k < W; ++k) Ms[r * LDW + k] = __float2bfloat16(m[size_t(r * W + k)]);
    }
    __syncthreads();
    float acc[N / 8][4];
    cuda::mma::rows_times_rows<K, N>(As, Bs, acc);
    for (int j = 0; j < N / 8; ++j)
      for (int e = 0; e < 4; ++e) c[size_t(cuda::mma::acc_row(e) * N + cuda::mma::acc_col(j, e))] = acc[j][e];
    uint32_t frag[N / 16][4];
    cuda::mma::accumulators_to_a<N>(acc, frag);
    float out[W / 8][4] = {};
    cuda::mma::a_times_tile<N, W>(frag, Ms, out);
    cuda::mma::store_accumulators<W>(out, 1.0f, d.data(), 0, 16);
  });
  std::vector<float> want_c(16 * N, 0.0f), want_d(16 * W, 0.0f);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < N; ++j)
      for (int k = 0; k < K; ++k) want_c[size_t(i * N + j)] += a[size_t(i * K + k)] * b[size_t(j * K + k)];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < W; ++j)
      for (int k = 0; k < N; ++k)
        want_d[size_t(i * W + j)] += __bfloat162float(__float2bfloat16(c[size_t(i * N + k)])) * m[size_t(k * W + j)];
  EXPECT_LT(test::max_abs_diff(c.data(), want_c.data(), 16 * N), 1e-4);
  EXPECT_LT(test::max_abs_diff(d.data(), want_d.data(), 16 * W), 1e-4);
}

TEST(EmulatedWarpMma, FindsSharedAccessOutsideTheLaunchesSharedMemory) {
  EXPECT_THROW(emu::launch({1, 1, 1}, 32, smem, 64,
                           [&] {
                             uint32_t r[4];
                             cuda::mma::ldsm_x4(r, reinterpret_cast<const bf16*>(smem) + 64 * (threadIdx.x % 8));
                           }),
               std::runtime_error);
}

struct FlashShape {
  int64_t BH, S, hd;
};
class EmulatedFlashAttention : public ::testing::TestWithParam<FlashShape> {};

template <int HD>
void run_kernels(int64_t BH, int64_t S, float scale, const bf16* q, const bf16* k, const bf16* v, const bf16* dout,
                 const float* lse_in, const float* delta, float* out, float* lse, float* dq, float* dk, float* dv) {
  const emu::Index3 grid{unsigned((S + flash::kTile - 1) / flash::kTile), unsigned(BH), 1};
  emu::launch(grid, flash::kThreads, smem, flash::fwd_smem<HD>(),
              [&] { flash::flash_fwd<HD>(q, k, v, out, lse, S, scale); });
  emu::launch(grid, flash::kThreads, smem, flash::bwd_kv_smem<HD>(),
              [&] { flash::flash_bwd_kv<HD>(q, k, v, dout, lse_in, delta, dk, dv, S, scale); });
  emu::launch(grid, flash::kThreads, smem, flash::bwd_q_smem<HD>(),
              [&] { flash::flash_bwd_q<HD>(q, k, v, dout, lse_in, delta, dq, S, scale); });
}

// [BH, S, hd] head-major <-> [1, S, BH, hd], the CPU attention's layout
std::vector<float> heads_to_rows(const std::vector<float>& x, int64_t BH, int64_t S, int64_t hd) {
  std::vector<float> y(x.size());
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < hd; ++c) y[size_t((s * BH + h) * hd + c)] = x[size_t((h * S + s) * hd + c)];
  return y;
}

TEST_P(EmulatedFlashAttention, ForwardAndBackwardMatchTheCpu) {
  const auto [BH, S, hd] = GetParam();
  const int64_t n = BH * S * hd;
  const float scale = 1.0f / std::sqrt(float(hd));
  const auto q16 = to_bf16(test::random_vector(n, 10)), k16 = to_bf16(test::random_vector(n, 11)),
             v16 = to_bf16(test::random_vector(n, 12)), do16 = to_bf16(test::random_vector(n, 13));
  // the CPU reference on the same bf16 values, in its [S, H, hd] layout
  const auto q = heads_to_rows(to_float(q16), BH, S, hd), k = heads_to_rows(to_float(k16), BH, S, hd),
             v = heads_to_rows(to_float(v16), BH, S, hd), dout = heads_to_rows(to_float(do16), BH, S, hd);
  std::vector<float> out(n), lse(BH * S), dq(n), dk(n), dv(n), delta(BH * S, 0.0f);
  attention_forward(q.data(), k.data(), v.data(), out.data(), lse.data(), 1, S, BH, BH, hd);
  attention_backward(q.data(), k.data(), v.data(), out.data(), lse.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                     1, S, BH, BH, hd);
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t c = 0; c < hd; ++c)
        delta[size_t(h * S + s)] += out[size_t((s * BH + h) * hd + c)] * dout[size_t((s * BH + h) * hd + c)];

  const float nan = std::numeric_limits<float>::quiet_NaN();  // every output element must be written
  for (const emu::Schedule schedule : {emu::Schedule{false, false}, emu::Schedule{true, false}, emu::Schedule{true, true}}) {
    SCOPED_TRACE(std::string(schedule.copies_at_issue ? "cp.async lands at issue" : "cp.async lands at the wait") +
                 (schedule.reverse_warps ? ", the last warp leads" : ", warp 0 leads"));
    emu::set_schedule(schedule);
    std::vector<float> gout(n, nan), glse(BH * S, nan), gdq(n, nan), gdk(n, nan), gdv(n, nan);
    auto run = hd == 32 ? run_kernels<32> : hd == 64 ? run_kernels<64> : run_kernels<128>;
    run(BH, S, scale, q16.data(), k16.data(), v16.data(), do16.data(), lse.data(), delta.data(), gout.data(),
        glse.data(), gdq.data(), gdk.data(), gdv.data());
    EXPECT_LT(test::max_abs_diff(glse.data(), lse.data(), BH * S), 1e-4) << "lse";
    const std::pair<const char*, double> errors[] = {{"out", test::relative_error(heads_to_rows(gout, BH, S, hd), out)},
                                                     {"dq", test::relative_error(heads_to_rows(gdq, BH, S, hd), dq)},
                                                     {"dk", test::relative_error(heads_to_rows(gdk, BH, S, hd), dk)},
                                                     {"dv", test::relative_error(heads_to_rows(gdv, BH, S, hd), dv)}};
    for (const auto& [what, err] : errors) EXPECT_LT(err, 1e-2) << what;  // bf16 probabilities in the products
  }
  emu::set_schedule(emu::Schedule{});
}

// Partial tiles (S not a multiple of 64 or 32, S below one mma tile), several tiles, every head dim
// the kernels take.
INSTANTIATE_TEST_SUITE_P(Shapes, EmulatedFlashAttention,
                         ::testing::Values(FlashShape{1, 7, 32}, FlashShape{2, 100, 32}, FlashShape{1, 129, 64},
                                           FlashShape{1, 64, 128},
                                           FlashShape{1, 150, 128}),
                         [](const auto& info) {
                           const FlashShape& s = info.param;
                           return "BH" + std::to_string(s.BH) + "_S" + std::to_string(s.S) + "_hd" +
                                  std::to_string(s.hd);
                         });

}  // namespace
}  // namespace moe
