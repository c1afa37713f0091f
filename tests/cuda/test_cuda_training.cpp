// moe-train's GPU step (src/train/gpu/, train/gpu_training.h) against the CPU StepRunner, and a
// whole bf16 training run through the Trainer. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kernels/cuda/device.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/layout.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/gpu_training.h"
#include "train/train_step.h"
#include "train/trainer.h"

namespace moe {
namespace {

// Micro-batch m of step s: a deterministic window of the token stream.
BatchFiller filler(int64_t step, int vocab) {
  return [step, vocab](int m, int32_t* tokens, int32_t* targets) {
    for (int i = 0; i < 64; ++i) {
      const int64_t x = (step * 977 + m * 131 + i * 7) % vocab;
      tokens[i] = int32_t(x);
      targets[i] = int32_t((x * 3 + 1) % vocab);
    }
  };
}

// fp32 on the GPU: three optimizer steps give the CPU StepRunner's losses, norms, learning rates
// and expert loads, and to_host gives its weights, AdamW moments and update count.
TEST(CudaTraining, StepsMatchTheCpuStepRunnerAndComeBackToTheHost) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  auto dir = test::temp_dir("cuda_training_steps");
  Config cfg = test::tiny_config(dir);  // micro_batch 4 x seq 16 = 64 tokens, 2 micro-batches per step
  auto comm = make_local_communicator();
  ParallelGroups groups = ParallelGroups::build(*comm, cfg);
  Transformer cpu(cfg.model, MoeGroups(groups.world, groups.ep.get(), groups.tp.get()));
  cpu.params().initialize(5);
  AdamW cpu_optim(cfg.optim, cpu.params().params());
  Transformer host(cfg.model, MoeGroups(groups.world, groups.ep.get(), groups.tp.get()));
  host.params().initialize(5);
  AdamW host_optim(cfg.optim, host.params().params());
  std::unique_ptr<GpuTraining> gpu = make_gpu_training(cfg, host, host_optim, groups);
  StepRunner runner(cfg, groups, cpu, cpu_optim);
  for (int64_t step = 0; step < 3; ++step) {
    StepResult want = runner.run(step, filler(step, cfg.model.vocab_size));
    StepResult got = gpu->run(step, filler(step, cfg.model.vocab_size));
    EXPECT_NEAR(got.loss, want.loss, 1e-4 * want.loss) << "step " << step + 1;
    EXPECT_NEAR(got.grad_norm, want.grad_norm, 1e-4 * want.grad_norm) << "step " << step + 1;
    EXPECT_EQ(got.lr, want.lr);
    EXPECT_EQ(got.expert_load, want.expert_load) << "step " << step + 1;
  }
  gpu->to_host(host, host_optim);
  EXPECT_EQ(host_optim.step_count(), 3);
  const auto& a = cpu_optim.params();
  for (size_t i = 0; i < a.size(); ++i) {
    const Param* p = a[i];
    const Param* q = host.params().find(p->name);
    EXPECT_LT(test::max_abs_diff(q->value.data(), p->value.data(), p->value.numel()), 1e-4) << p->name;
    Tensor m_cpu = cpu_optim.moment(i, 0), m_gpu = host_optim.moment(i, 0);
    EXPECT_LT(test::max_abs_diff(m_gpu.data(), m_cpu.data(), m_cpu.numel()), 1e-5) << p->name << " exp_avg";
  }
}

// train.precision bf16 through the Trainer, as moe-train runs it: the loss falls, metrics are
// written, and the checkpoint (fp32, SPEC) loads into a CPU model.
TEST(CudaTraining, Bf16RunTrainsEvaluatesAndCheckpoints) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  auto dir = test::temp_dir("cuda_training_bf16");
  Config cfg = test::tiny_config(dir);
  cfg.train.precision = "bf16";
  cfg.train.steps = 30;
  cfg.train.eval_every = 15;
  cfg.optim.lr = 0.01;
  cfg.checkpoint.every = 30;
  auto comm = make_local_communicator();
  Trainer trainer(cfg, *comm);
  trainer.use_gpu(&make_gpu_training, &gpu_training_available);
  ASSERT_EQ(trainer.run(), 0);
  std::ifstream metrics(cfg.run.out_dir + "/metrics.jsonl");
  std::string line, first, last;
  while (std::getline(metrics, line))
    if (!line.empty()) (first.empty() ? first : last) = line;
  auto loss_of = [](const std::string& json) {
    const auto at = json.find("\"loss\": ");
    return at == std::string::npos ? NAN : std::stod(json.substr(at + 8));
  };
  EXPECT_LT(loss_of(last), 0.8 * loss_of(first)) << first << "\n" << last;
  EXPECT_NE(last.find("\"val_loss\""), std::string::npos) << last;
  Transformer back(cfg.model, comm.get());
  AdamW optim(cfg.optim, back.params().params());
  CheckpointMeta meta = load_checkpoint(cfg.checkpoint.dir + "/step_00000030.h5", back.params(), &optim);
  EXPECT_EQ(meta.step, 30);
  EXPECT_EQ(optim.step_count(), 30);
}

}  // namespace
}  // namespace moe
