// End-to-end runs of the Trainer on a tiny corpus: the loss falls, metrics.jsonl carries the SPEC
// fields, resuming from a checkpoint continues bit for bit, init_from loads the model only.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "cpu_played_gpu.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/ckpt_tool.h"
#include "parallel/layout.h"
#include "train/gpu_training.h"
#include "train/train_step.h"
#include "train/trainer.h"

namespace moe {
namespace fs = std::filesystem;

static int run(const Config& cfg) {
  auto comm = make_local_communicator();
  return Trainer(cfg, *comm).run();
}

TEST(Training, LossFallsAndMetricsCarrySpecFields) {
  auto dir = test::temp_dir("train_falls");
  Config cfg = test::tiny_config(dir);
  cfg.train.steps = 40;
  cfg.train.eval_every = 20;
  cfg.optim.lr = 0.01;
  cfg.optim.warmup_steps = 4;
  ASSERT_EQ(run(cfg), 0);
  auto lines = test::read_lines(cfg.run.out_dir + "/metrics.jsonl");
  ASSERT_EQ(lines.size(), 40u);
  for (const char* k : {"step", "loss", "ce", "aux", "lr", "grad_norm", "tokens_per_s", "step_ms", "mfu"})
    EXPECT_FALSE(std::isnan(test::json_number(lines[0], k))) << k;
  EXPECT_NE(lines[0].find("\"breakdown_ms\": {"), std::string::npos);
  EXPECT_NE(lines[0].find("\"attention_fwd\""), std::string::npos);
  EXPECT_NE(lines[0].find("\"expert_load\": {\"0\": ["), std::string::npos);
  EXPECT_FALSE(std::isnan(test::json_number(lines[19], "val_loss")));
  double first = test::json_number(lines[0], "ce"), last = test::json_number(lines[39], "ce");
  EXPECT_LT(last, first - 1.5) << "ce " << first << " -> " << last;
  EXPECT_TRUE(fs::exists(cfg.run.out_dir + "/train.log"));
}

TEST(Training, ResumeContinuesBitForBit) {
  auto dir = test::temp_dir("train_resume");
  Config cfg = test::tiny_config(dir);
  cfg.train.steps = 6;
  cfg.checkpoint.every = 3;
  cfg.checkpoint.keep = 5;
  cfg.model.moe.router.bias_update_rate = 0.01;  // the bias must be carried too
  cfg.model.moe.lbl_scope = "global";
  ASSERT_EQ(run(cfg), 0);
  // An interrupted run: only the step-3 checkpoint survived.
  Config resumed = cfg;
  resumed.run.out_dir = dir + "/out_resumed";
  resumed.checkpoint.dir = dir + "/ckpt_resumed";
  fs::create_directories(resumed.checkpoint.dir);
  fs::copy_file(checkpoint_path(cfg.checkpoint.dir, 3), checkpoint_path(resumed.checkpoint.dir, 3));
  ASSERT_EQ(run(resumed), 0);

  auto a = test::read_lines(cfg.run.out_dir + "/metrics.jsonl"), b = test::read_lines(resumed.run.out_dir + "/metrics.jsonl");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(test::json_number(a[3 + i], "step"), test::json_number(b[i], "step"));
    EXPECT_EQ(test::json_number(a[3 + i], "loss"), test::json_number(b[i], "loss"));
    EXPECT_EQ(test::json_number(a[3 + i], "grad_norm"), test::json_number(b[i], "grad_norm"));
  }
  auto comm = make_local_communicator();
  Transformer ma(cfg.model, comm.get()), mb(cfg.model, comm.get());
  AdamW oa(cfg.optim, ma.params().params()), ob(cfg.optim, mb.params().params());
  load_checkpoint(checkpoint_path(cfg.checkpoint.dir, 6), ma.params(), &oa);
  load_checkpoint(checkpoint_path(resumed.checkpoint.dir, 6), mb.params(), &ob);
  auto pa = ma.params().params(), pb = mb.params().params();
  for (size_t i = 0; i < pa.size(); ++i) {
    size_t bytes = sizeof(float) * pa[i]->value.numel();
    EXPECT_EQ(0, std::memcmp(pa[i]->value.data(), pb[i]->value.data(), bytes)) << pa[i]->name;
    EXPECT_EQ(0, std::memcmp(oa.moment(i, 1).data(), ob.moment(i, 1).data(), bytes)) << pa[i]->name;
  }
  auto ba = ma.params().buffers(), bb = mb.params().buffers();
  ASSERT_FALSE(ba.empty());
  for (size_t i = 0; i < ba.size(); ++i)
    EXPECT_EQ(0, std::memcmp(ba[i]->value.data(), bb[i]->value.data(), sizeof(float) * ba[i]->value.numel()));
}

TEST(Training, ResumeAutoSkipsACorruptNewestCheckpoint) {
  auto dir = test::temp_dir("train_resume_skip");
  Config cfg = test::tiny_config(dir);
  cfg.train.steps = 4;
  cfg.checkpoint.every = 2;
  ASSERT_EQ(run(cfg), 0);
  // Corrupt the newest checkpoint (step 4): a truncated file, as a crash mid-copy would leave.
  std::string newest = checkpoint_path(cfg.checkpoint.dir, 4);
  fs::resize_file(newest, fs::file_size(newest) / 3);
  Config more = cfg;
  more.train.steps = 6;
  more.run.out_dir = dir + "/out_more";
  ASSERT_EQ(run(more), 0);
  auto lines = test::read_lines(more.run.out_dir + "/metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(test::json_number(lines.front(), "step"), 3);  // resumed from step 2
  bool logged = false;
  for (const auto& l : test::read_lines(more.run.out_dir + "/train.log"))
    logged |= l.find("skipping " + newest) != std::string::npos;
  EXPECT_TRUE(logged) << "the skipped checkpoint and the reason are logged";
}

TEST(Training, BackgroundSavesChangeNothing) {
  auto dir = test::temp_dir("train_async");
  Config cfg = test::tiny_config(dir);
  cfg.train.steps = 4;
  cfg.checkpoint.every = 1;
  cfg.checkpoint.keep = 10;
  Config sync = cfg;
  sync.run.out_dir = dir + "/out_sync";
  sync.checkpoint.dir = dir + "/ckpt_sync";
  setenv("MOE_CKPT_SYNC", "1", 1);
  ASSERT_EQ(run(sync), 0);
  unsetenv("MOE_CKPT_SYNC");
  ASSERT_EQ(run(cfg), 0);  // saves overlap the following steps
  auto a = test::read_lines(cfg.run.out_dir + "/metrics.jsonl"), b = test::read_lines(sync.run.out_dir + "/metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(test::json_number(a[i], "loss"), test::json_number(b[i], "loss"));
  for (int step = 1; step <= 4; ++step)
    EXPECT_EQ(ckpt_diff(checkpoint_path(cfg.checkpoint.dir, step), checkpoint_path(sync.checkpoint.dir, step), 0, 0), 0)
        << "step " << step;
}

TEST(Training, InitFromLoadsModelOnlyAndStartsAtStepZero) {
  auto dir = test::temp_dir("train_init_from");
  Config cfg = test::tiny_config(dir);
  cfg.train.steps = 2;
  cfg.checkpoint.every = 2;
  ASSERT_EQ(run(cfg), 0);
  Config next = cfg;
  next.run.out_dir = dir + "/out2";
  next.checkpoint.dir = dir + "/ckpt2";
  next.checkpoint.init_from = checkpoint_path(cfg.checkpoint.dir, 2);
  next.train.steps = 1;
  next.checkpoint.every = 1;
  ASSERT_EQ(run(next), 0);
  auto comm = make_local_communicator();
  Transformer m(cfg.model, comm.get());
  AdamW o(cfg.optim, m.params().params());
  auto meta = load_checkpoint(checkpoint_path(next.checkpoint.dir, 1), m.params(), &o);
  EXPECT_EQ(meta.step, 1);
  EXPECT_EQ(o.step_count(), 1);  // a fresh optimizer took one step
}

TEST(Training, Bf16WithoutAGpuBuildIsRefusedBeforeAnyWork) {
  auto dir = test::temp_dir("train_bf16");
  Config cfg = test::tiny_config(dir);
  cfg.train.precision = "bf16";
  const std::string msg = test::error_of([&] { run(cfg); });  // a Trainer given no GPU factory
  EXPECT_NE(msg.find("train.precision bf16 trains on a GPU, and this build has no CUDA"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(cfg.run.out_dir + "/metrics.jsonl"));
}

TEST(Training, Bf16WithoutAGpuOnTheMachineIsRefusedBeforeAnyWork) {
  auto dir = test::temp_dir("train_bf16_nogpu");
  Config cfg = test::tiny_config(dir);
  cfg.train.precision = "bf16";
  auto comm = make_local_communicator();
  Trainer trainer(cfg, *comm);
  trainer.use_gpu([](const Config&, Transformer&, AdamW&, ParallelGroups&) -> std::unique_ptr<GpuTraining> {
    return nullptr;
  },
                  [] { return false; });
  const std::string msg = test::error_of([&] { trainer.run(); });
  EXPECT_NE(msg.find("this machine has none that CUDA can use"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(cfg.run.out_dir));
}

// The Trainer's GPU branch (train.precision bf16) with the device side played by a second CPU
// model (tests/cpu_played_gpu.h) against the CPU branch. The dp version: tests/mpi/test_mpi_gpu_branch.
TEST(Training, GpuBranchOfTheTrainerMatchesTheCpuBranch) {
  auto dir_cpu = test::temp_dir("train_branch_cpu"), dir_gpu = test::temp_dir("train_branch_gpu");
  Config cpu_cfg = test::tiny_config(dir_cpu), gpu_cfg = test::tiny_config(dir_gpu);
  for (Config* c : {&cpu_cfg, &gpu_cfg}) c->train.eval_every = 3, c->checkpoint.every = 3;
  gpu_cfg.train.precision = "bf16";  // takes the GPU branch; the played device computes in fp32
  ASSERT_EQ(run(cpu_cfg), 0);
  auto comm = make_local_communicator();
  Trainer trainer(gpu_cfg, *comm);
  test::CpuPlayedGpu::copies = 0;
  trainer.use_gpu(&test::make_cpu_played_gpu, [] { return true; });
  ASSERT_EQ(trainer.run(), 0);
  EXPECT_EQ(test::CpuPlayedGpu::copies, 2);  // before the checkpoints of steps 3 and 6
  EXPECT_EQ(test::CpuPlayedGpu::dp_size, 1);
  test::expect_same_runs(cpu_cfg, gpu_cfg, {3, 6}, {3, 6});
}

TEST(Training, ExplicitResumeOfMissingFileIsRefused) {
  auto dir = test::temp_dir("train_bad_resume");
  Config cfg = test::tiny_config(dir);
  cfg.checkpoint.resume = dir + "/nope.h5";
  try {
    run(cfg);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("nope.h5"), std::string::npos);
  }
}

}  // namespace moe
