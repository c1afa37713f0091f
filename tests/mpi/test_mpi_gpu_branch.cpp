// The Trainer's GPU branch (train.precision bf16) with data, tensor and expert parallelism over all
// ranks, the device side played by CPU models (tests/cpu_played_gpu.h): the factory gets the process
// groups, every rank trains its share of each step, evaluates and copies back (its expert shard
// under ep, its tp slices) before checkpoints, with and without ZeRO-1; the logged metrics and the
// checkpoints must equal the CPU branch's on the same ranks bit for bit.
// (The real devices: tests/cuda/.)
#include <gtest/gtest.h>

#include <filesystem>

#include "cpu_played_gpu.h"
#include "parallel/communicator.h"
#include "test_util.h"
#include "train/trainer.h"

namespace moe {
namespace {

class GpuBranch : public ::testing::Test {
 public:
  static void SetUpTestSuite() { world_ = make_mpi_world_communicator().release(); }
  // tiny_config under `name`, data written by rank 0, finalized for the world.
  static Config config(const std::string& name) {
    const std::string dir = std::string(MOE_BINARY_DIR) + "/test_tmp/mpi_gpu_branch_" + name + "_" +
                            std::to_string(world_->size());
    if (world_->rank() == 0) {
      std::filesystem::remove_all(dir);
      std::filesystem::create_directories(dir);
    }
    world_->barrier();
    Config c = test::tiny_config(dir, world_->rank() == 0);
    c.train.micro_batch = 8 / world_->size();  // global batch 8: one micro-batch per rank at 2 and 4 ranks
    c.model.moe.lbl_scope = "global";  // the balancing counts summed over the dp ranks
    c.train.eval_every = 3;
    c.checkpoint.every = 3;
    c.finalize(world_->size());
    world_->barrier();
    return c;
  }
  static Communicator* world_;
};
void expect_branches_agree(const std::string& name, int ep, Communicator& world, int zero = 0, int tp = 1);
Communicator* GpuBranch::world_ = nullptr;

// The CPU branch and the GPU branch (CPU-played) on the same ranks with parallel.ep = ep,
// parallel.zero = zero and parallel.tp = tp.
void expect_branches_agree(const std::string& name, int ep, Communicator& world, int zero, int tp) {
  Config cpu_cfg = GpuBranch::config(name + "_cpu"), gpu_cfg = GpuBranch::config(name + "_gpu");
  cpu_cfg.parallel.ep = gpu_cfg.parallel.ep = ep;
  cpu_cfg.parallel.zero = gpu_cfg.parallel.zero = zero;
  cpu_cfg.parallel.tp = gpu_cfg.parallel.tp = tp;
  cpu_cfg.finalize(world.size());
  gpu_cfg.finalize(world.size());
  gpu_cfg.train.precision = "bf16";  // the played device computes in fp32
  ASSERT_EQ(Trainer(cpu_cfg, world).run(), 0);
  Trainer trainer(gpu_cfg, world);
  test::CpuPlayedGpu::copies = 0;
  trainer.use_gpu(&test::make_cpu_played_gpu, [] { return true; });
  ASSERT_EQ(trainer.run(), 0);
  EXPECT_EQ(test::CpuPlayedGpu::dp_size, world.size() / tp);
  EXPECT_EQ(test::CpuPlayedGpu::ep_size, ep);
  EXPECT_EQ(test::CpuPlayedGpu::copies, 2);  // on every rank, before the checkpoints of steps 3 and 6
  world.barrier();
  if (world.rank() == 0) test::expect_same_runs(cpu_cfg, gpu_cfg, {3, 6}, {3, 6});
}

TEST_F(GpuBranch, DataParallelMatchesTheCpuBranch) { expect_branches_agree("dp", 1, *world_); }

// Expert parallelism over all ranks (4 experts: one or two per rank); every rank's expert shard
// copied back before the checkpoints.
TEST_F(GpuBranch, ExpertParallelMatchesTheCpuBranch) { expect_branches_agree("ep", world_->size(), *world_); }

// ZeRO-1 with data and expert parallelism: the moments of the replicated parameters split over dp;
// the copy back gathers them for the checkpoints.
TEST_F(GpuBranch, ZeroWithExpertParallelismMatchesTheCpuBranch) {
  expect_branches_agree("zero_ep", world_->size(), *world_, 1);
}

// Tensor parallelism over pairs of ranks with ep over all of them and ZeRO-1 (4 ranks: dp 2 x tp 2).
TEST_F(GpuBranch, TensorParallelWithExpertParallelismAndZeroMatchesTheCpuBranch) {
  expect_branches_agree("tp", world_->size(), *world_, 1, 2);
}

}  // namespace
}  // namespace moe
