// One optimizer step: gradient accumulation over the step's micro-batches, global-norm clipping,
// the learning-rate schedule, AdamW, then the end-of-step MoE updates (expert bias, load reset).
// Shared by the trainer and the benchmark.
#pragma once
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "core/config.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/grad_sync.h"
#include "parallel/layout.h"

namespace moe {

struct StepResult {
  double loss = 0, ce = 0, aux = 0;  // means over the step's micro-batches of every dp rank
  double grad_norm = 0;               // before clipping
  double lr = 0;
  std::vector<std::pair<int, std::vector<int64_t>>> expert_load;  // tokens per expert, this step
};

// Fills micro-batch m of the step: tokens and targets, each [micro_batch * seq_len].
using BatchFiller = std::function<void(int m, int32_t* tokens, int32_t* targets)>;

class StepRunner {
 public:
  // groups: the process groups of the layout (one-rank groups for a single process).
  StepRunner(const Config& cfg, ParallelGroups& groups, Transformer& model, AdamW& optim);
  // Runs optimizer step `step` (0-based); the update applied is number step + 1.
  StepResult run(int64_t step, const BatchFiller& fill);

 private:
  double global_norm();

  const Config& cfg_;
  ParallelGroups& groups_;
  Transformer& model_;
  AdamW& optim_;
  GradSync sync_;
  int accum_steps_;
  int dp_;
  std::vector<int32_t> tokens_, targets_;
};

}  // namespace moe
