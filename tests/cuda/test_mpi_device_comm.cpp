// Device communicators on 2 ranks (mpiexec): every collective of the host-staged communicator on
// device buffers against values computed from the rank numbers, and the NCCL communicator where
// each rank has a GPU of its own. Skipped (on every rank alike) where no CUDA device can be used.
#include <gtest/gtest.h>

#include "core/error.h"
#include "kernels/cuda/device.h"
#include "model/gpu/gpu_transformer.h"
#include "model/transformer.h"
#include "model_variants.h"
#include "parallel/communicator.h"
#include "parallel/gpu/device_communicators.h"
#include "test_util.h"

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
