// One optimizer step.
#include "train/train_step.h"

#include <cmath>

#include "core/error.h"
#include "core/profiler.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"

namespace moe {

StepRunner::StepRunner(const Config& cfg, int world_size, Transformer& model, AdamW& optim)
    : cfg_(cfg),
      model_(model),
      optim_(optim),
      accum_steps_(cfg.grad_accum_steps(world_size)),
      dp_(cfg.dp(world_size)) {
  tokens_.resize(size_t(cfg.train.micro_batch) * cfg.train.seq_len);
  targets_.resize(tokens_.size());
}

StepResult StepRunner::run(int64_t step, const BatchFiller& fill) {
  const int64_t B = cfg_.train.micro_batch, S = cfg_.train.seq_len;
  // The objective is the mean over all micro-batches of all dp ranks of (ce + aux).
  const float grad_scale = 1.0f / float(accum_steps_ * dp_);
  StepResult r;
  model_.params().zero_grad();
  for (int m = 0; m < accum_steps_; ++m) {
    {
      ScopedPhase phase("data");
      fill(m, tokens_.data(), targets_.data());
    }
    MicroBatchLoss l = model_.forward_backward(tokens_.data(), targets_.data(), B, S, true, grad_scale);
    r.ce += l.ce / accum_steps_;
    r.aux += l.aux / accum_steps_;
  }
  r.loss = r.ce + r.aux;
  MOE_CHECK(std::isfinite(r.loss), "loss is not finite at step " << step + 1 << " (ce " << r.ce << ", aux " << r.aux
                                                                 << "): lower optim.lr or check the data");
  ScopedPhase phase("optimizer");
  auto params = model_.params().params();
  r.grad_norm = global_grad_norm(params);
  clip_gradients(params, r.grad_norm, cfg_.train.grad_clip);
  r.lr = learning_rate(cfg_.optim, cfg_.train.steps, int(step + 1));
  optim_.step(r.lr);
  r.expert_load = model_.expert_loads();
  model_.end_step();
  return r;
}

}  // namespace moe
