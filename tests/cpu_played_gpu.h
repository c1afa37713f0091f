// The Trainer's GPU branch (train.precision bf16) without a GPU: the device side played by a second
// CPU model, so that the branch's plumbing (the factory and its dp group, the step, evaluation
// through validation_ce, the copy back before each checkpoint) can be compared with the CPU branch
// in every CI run. The real GPU side: tests/cuda/test_cuda_training.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/layout.h"
#include "train/gpu_training.h"
#include "train/train_step.h"

namespace moe::test {

class CpuPlayedGpu : public GpuTraining {
 public:
  // A copy of the host model (this rank's expert shard under ep) and optimizer state; its groups
  // and StepRunner over the Trainer's `groups`, as the Trainer's CPU branch builds them.
  CpuPlayedGpu(const Config& cfg, Transformer& host, AdamW& optim, ParallelGroups& groups);
  StepResult run(int64_t step, const BatchFiller& fill) override { return runner_.run(step, fill); }
  double validation_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S) override;
  void to_host(Transformer& host, AdamW& optim) override;
  double peak_tflops() override { return 1.0; }

  static int copies;  // to_host calls since reset by the test
  static int dp_size, ep_size;  // the dp and ep group sizes of the last CpuPlayedGpu made

 private:
  ParallelGroups& groups_;
  Transformer model_;
  AdamW optim_;
  StepRunner runner_;
};

// The GpuTrainingFactory that makes a CpuPlayedGpu.
std::unique_ptr<GpuTraining> make_cpu_played_gpu(const Config& cfg, Transformer& host, AdamW& optim,
                                                 ParallelGroups& groups);

// Two Trainer runs (a: the reference) logged the same loss, grad_norm, val_loss and expert loads at
// every step (bit for bit; val_loss at the steps in eval_steps only), and wrote bit-identical
// weights and the same update count in the checkpoints of ckpt_steps.
void expect_same_runs(const Config& a, const Config& b, const std::vector<int>& eval_steps,
                      const std::vector<int>& ckpt_steps);

}  // namespace moe::test
