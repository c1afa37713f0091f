// Device communicators on 2 ranks (mpiexec): every collective of the host-staged communicator on
// device buffers against values computed from the rank numbers, and the NCCL communicator where
// each rank has a GPU of its own. Skipped (on every rank alike) where no CUDA device can be used.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/error.h"
#include "kernels/cuda/device.h"
#include "model/gpu/gpu_transformer.h"
#include "model/transformer.h"
#include "model_variants.h"
#include "parallel/communicator.h"
#include "parallel/gpu/device_communicators.h"
#include "optim/adamw.h"
#include "parallel/layout.h"
#include "test_util.h"
#include "train/gpu_training.h"

namespace moe {
namespace {

using cuda::DeviceArray;

float value(int rank, int64_t i) { return float(rank * 1000 + i) * 0.5f; }

void check_collectives(Communicator& c) {
  const int r = c.rank(), n = c.size();
  std::vector<float> f(5);
  for (int i = 0; i < 5; ++i) f[i] = value(r, i);
  DeviceArray<float> df(f), dg(f);
  c.all_reduce_sum(df.data(), 5);
  auto pending = c.all_reduce_sum_async(dg.data(), 5);
  pending->wait();
  auto hf = df.download(), hg = dg.download();
  for (int i = 0; i < 5; ++i) {
    float want = 0;
    for (int q = 0; q < n; ++q) want += value(q, i);
    EXPECT_FLOAT_EQ(hf[i], want);
    EXPECT_FLOAT_EQ(hg[i], want);
  }
  DeviceArray<float> mine(std::vector<float>{value(r, 0), value(r, 1)}), all{size_t(2 * n)};
  c.all_gather(mine.data(), all.data(), 2);
  auto ha = all.download();
  for (int q = 0; q < n; ++q) EXPECT_EQ(ha[2 * q + 1], value(q, 1));
  std::vector<float> in(3 * n);
  for (int i = 0; i < 3 * n; ++i) in[i] = value(r, i);
  DeviceArray<float> din(in), dout{size_t(3)};
  c.reduce_scatter_sum(din.data(), dout.data(), 3);
  auto ho = dout.download();
  for (int i = 0; i < 3; ++i) {
    float want = 0;
    for (int q = 0; q < n; ++q) want += value(q, r * 3 + i);
    EXPECT_FLOAT_EQ(ho[i], want);
  }
  // rank r sends r + q + 1 floats to rank q
  std::vector<int64_t> sc(n), rc(n);
  std::vector<float> send;
  for (int q = 0; q < n; ++q) {
    sc[q] = r + q + 1;
    rc[q] = q + r + 1;
    for (int64_t i = 0; i < sc[q]; ++i) send.push_back(value(r, q * 100 + i));
  }
  int64_t nr = 0;
  for (auto x : rc) nr += x;
  DeviceArray<float> ds(send), dr{size_t(nr)};
  c.all_to_all_v(ds.data(), sc.data(), dr.data(), rc.data());
  auto hr = dr.download();
  int64_t o = 0;
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < rc[q]; ++i) EXPECT_EQ(hr[o++], value(q, r * 100 + i));
}

TEST(DeviceCommunicators, HostStagedCollectivesOnDeviceBuffers) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  auto world = make_mpi_world_communicator();
  auto staged = make_host_staged_communicator(*world);
  check_collectives(*staged);
  auto half = staged->split(0, staged->rank());  // a split keeps the device semantics
  check_collectives(*half);
}

// Data parallelism with the ranks sharing one GPU through the host-staged communicator: each rank
// runs the GPU model on its own micro-batch and the all-reduced gradients equal those of one rank
// (computed on each rank alone, without communication) that runs every rank's micro-batch.
TEST(DeviceCommunicators, DataParallelRanksSharingOneGpuMatchOneRank) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  auto world = make_mpi_world_communicator();
  auto staged = make_host_staged_communicator(*world);
  const int r = staged->rank(), n = staged->size();
  Config cfg = test::variant_config({"dp_gpu", {"model.moe.num_shared_experts=1"}});
  auto local = make_local_communicator();
  Transformer host(cfg.model, local.get());
  host.params().initialize(41);
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  const float scale = 1.0f / float(n);
  gpu::GpuTransformer one(cfg.model, host.params()), mine(cfg.model, host.params());
  for (int q = 0; q < n; ++q) {  // one rank: every micro-batch
    std::vector<int32_t> tokens, targets;
    test::random_tokens("dp_gpu", 3, q, B * S, cfg.model.vocab_size, tokens, targets);
    one.forward_backward(tokens.data(), targets.data(), B, S, scale);
    if (q == r) mine.forward_backward(tokens.data(), targets.data(), B, S, scale);  // this rank's share
  }
  mine.all_reduce_grads(*staged);
  Transformer want(cfg.model, local.get()), got(cfg.model, local.get());
  one.download_grads(want.params());
  mine.download_grads(got.params());
  for (Param* p : want.params().params())
    test::expect_tensor_close(got.params().find(p->name)->grad, p->grad, p->name + " on rank " + std::to_string(r), 1e-5);
}

// The same sums overlapped with the backward (set_grad_sync: each layer's sums start when its
// backward is queued, the rest at the end) equal the blocking ones.
TEST(DeviceCommunicators, OverlappedGradientSumsEqualTheBlockingOnes) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  auto world = make_mpi_world_communicator();
  std::string kind;
  auto comm = make_device_communicator(*world, &kind);  // host-staged when the ranks share a GPU
  Config cfg = test::variant_config({"dp_overlap", {"model.moe.num_shared_experts=1"}});
  auto local = make_local_communicator();
  Transformer host(cfg.model, local.get());
  host.params().initialize(43);
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  std::vector<int32_t> tokens, targets;
  test::random_tokens("dp_overlap", 5, world->rank(), B * S, cfg.model.vocab_size, tokens, targets);
  gpu::GpuTransformer blocking(cfg.model, host.params()), overlapped(cfg.model, host.params());
  blocking.forward_backward(tokens.data(), targets.data(), B, S, 0.5f);
  blocking.all_reduce_grads(*comm);
  overlapped.set_grad_sync(comm.get(), comm.get());
  overlapped.forward_backward(tokens.data(), targets.data(), B, S, 0.5f);
  overlapped.set_grad_sync(nullptr, nullptr);
  overlapped.finish_grad_sync();
  Transformer want(cfg.model, local.get()), got(cfg.model, local.get());
  blocking.download_grads(want.params());
  overlapped.download_grads(got.params());
  for (Param* p : want.params().params())
    test::expect_tensor_close(got.params().find(p->name)->grad, p->grad, p->name + " (" + kind + ")", 1e-6);
}

// moe-train's GPU step (GpuTraining: the GPU and communicators chosen by make_device_communicator,
// the sums overlapped with the last backward) on every rank with parallel.ep = ep, against one rank
// that runs all the step's micro-batches with all the experts: losses, norms and, after 3 steps,
// the weights (an expert weight: this rank's shard against its slice of the one-rank weight).
// In bf16 the rows cross the exchange rounded (the values the experts' GEMMs would round them to).
void expect_gpu_training_matches_one_rank(int ep, const std::string& precision = "fp32", double tol = 1e-5,
                                          int zero = 0) {
  auto world = make_mpi_world_communicator();
  auto local = make_local_communicator();
  const int r = world->rank(), n = world->size();
  const std::string dir = std::string(MOE_BINARY_DIR) + "/test_tmp/gpu_training_ep" + std::to_string(ep);  // no file read
  Config one = test::tiny_config(dir, false), many = test::tiny_config(dir, false);
  one.train.global_batch = many.train.global_batch = 4 * n;  // micro_batch 4: one micro-batch per rank
  many.parallel.ep = ep;
  many.parallel.zero = zero;
  one.train.precision = many.train.precision = precision;
  one.finalize(1, false);
  many.finalize(n, false);
  ParallelGroups g_one = ParallelGroups::build(*local, one), g_many = ParallelGroups::build(*world, many);
  Transformer host_one(one.model, MoeGroups(g_one.world, g_one.ep.get(), g_one.tp.get()));
  Transformer host_many(many.model, MoeGroups(g_many.world, g_many.ep.get(), g_many.tp.get()));
  host_one.params().initialize(9);
  host_many.params().initialize(9);  // the same full weights; each rank keeps its expert shard
  AdamW optim_one(one.optim, host_one.params().params());
  AdamW optim_many(many.optim, host_many.params().params(), zero == 1 ? g_many.dp.get() : nullptr);
  auto dp = make_gpu_training(many, host_many, optim_many, g_many);  // first: it selects this rank's GPU
  auto ref = make_gpu_training(one, host_one, optim_one, g_one);
  auto fill = [](int64_t step, int first) {  // micro-batch m is global micro-batch first + m of the step
    return [step, first](int m, int32_t* tokens, int32_t* targets) {
      std::vector<int32_t> t, y;
      test::random_tokens("gpu_training", uint64_t(step), first + m, 64, 256, t, y);
      std::copy(t.begin(), t.end(), tokens);
      std::copy(y.begin(), y.end(), targets);
    };
  };
  for (int64_t step = 0; step < 3; ++step) {
    const StepResult want = ref->run(step, fill(step, 0));
    const StepResult got = dp->run(step, fill(step, r));
    EXPECT_NEAR(got.loss, want.loss, tol * want.loss) << "step " << step + 1;
    EXPECT_NEAR(got.grad_norm, want.grad_norm, tol * want.grad_norm) << "step " << step + 1;
    EXPECT_EQ(got.expert_load, want.expert_load) << "step " << step + 1;
  }
  ref->to_host(host_one, optim_one);
  dp->to_host(host_many, optim_many);
  const int ep_rank = r % ep;
  for (Param* p : host_one.params().params()) {
    const Param* q = host_many.params().find(p->name);
    const int64_t shard = q->value.numel();  // the whole tensor, or this rank's experts under ep
    const Tensor want = p->value.view(q->sharded() ? ep_rank * shard : 0, q->value.shape());
    test::expect_tensor_close(q->value, want, p->name, tol);
  }
  // the AdamW moments copied back (under ZeRO gathered from every rank's shard), at full shape
  for (size_t i = 0; i < optim_one.params().size(); ++i) {
    const Param* p = optim_one.params()[i];
    const size_t j = size_t(std::find(optim_many.params().begin(), optim_many.params().end(),
                                      host_many.params().find(p->name)) -
                            optim_many.params().begin());
    for (int w = 0; w < 2; ++w) {
      const Tensor got = optim_many.moment(j, w), full = optim_one.moment(i, w);
      const Tensor want = full.view(got.numel() < full.numel() ? ep_rank * got.numel() : 0, got.shape());
      test::expect_tensor_close(got, want, p->name + (w ? " exp_avg_sq" : " exp_avg"), tol);
    }
  }
  EXPECT_EQ(optim_many.step_count(), 3);
}

TEST(DeviceCommunicators, DataParallelGpuTrainingMatchesOneRank) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  expect_gpu_training_matches_one_rank(1);
}

// Expert parallelism over all ranks: the experts split, token rows dispatched to their ranks and
// combined back over the device communicator (host-staged when the ranks share a GPU).
// With NCCL the exchanges run in two pipelined chunks, whose weight gradients sum a rank's rows in
// another order than one rank does: float differences, up to 6e-5 of the largest weight after three
// AdamW steps (1e-5 without chunks; a chunk's rows lost or misplaced would be off by far more).
TEST(DeviceCommunicators, ExpertParallelGpuTrainingMatchesOneRank) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  expect_gpu_training_matches_one_rank(2, "fp32", 2e-4);
}

// ZeRO-1: the replicated parameters' moments split over the dp ranks (with and without ep).
TEST(DeviceCommunicators, ZeroGpuTrainingMatchesOneRank) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  expect_gpu_training_matches_one_rank(1, "fp32", 1e-5, 1);
  expect_gpu_training_matches_one_rank(2, "bf16", 1e-4, 1);
}

// The same in bf16: the rows and output gradients cross the exchange as bf16 (half the bytes).
TEST(DeviceCommunicators, ExpertParallelBf16GpuTrainingMatchesOneRank) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  expect_gpu_training_matches_one_rank(2, "bf16", 1e-4);
}

TEST(DeviceCommunicators, NcclCollectivesWithOneGpuPerRank) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  if (!nccl_built()) GTEST_SKIP() << "this build has no NCCL";
  auto world = make_mpi_world_communicator();
  float too_few = 0;  // the same decision on every rank
  try {
    auto nccl = make_nccl_communicator(*world);
    check_collectives(*nccl);
  } catch (const Error& e) {
    too_few = std::string(e.message()).find("one GPU per rank") != std::string::npos ? 1.0f : 0.0f;
    if (too_few == 0) throw;
  }
  world->all_reduce_max(&too_few, 1);
  if (too_few > 0) GTEST_SKIP() << "fewer GPUs than ranks on this node";
}

}  // namespace
}  // namespace moe
