// One optimizer step.
#include "train/train_step.h"

#include <cmath>

#include "core/error.h"
#include "core/profiler.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"

namespace moe {

StepRunner::StepRunner(const Config& cfg, ParallelGroups& groups, Transformer& model, AdamW& optim)
    : cfg_(cfg),
      groups_(groups),
      model_(model),
      optim_(optim),
      sync_(model.params().params(),
            [&](const Param& p) -> Communicator* {
              if (p.expert()) return groups.expert_dp.get();
              // Weights that see only a tp rank's token slice sum over every rank; under ZeRO-1 the
              // dp part of every replicated gradient's sum is the reduce-scatter.
              if (p.token_sliced) return optim.zero() ? groups.tp.get() : groups.world;
              return optim.zero() ? nullptr : groups.dp.get();
            }),
      accum_steps_(cfg.grad_accum_steps(groups.world->size())),
      dp_(groups.dp_size) {
  tokens_.resize(size_t(cfg.train.micro_batch) * cfg.train.seq_len);
  targets_.resize(tokens_.size());
}

StepResult StepRunner::run(int64_t step, const BatchFiller& fill) {
  const int64_t B = cfg_.train.micro_batch, S = cfg_.train.seq_len;
  // The objective is the mean over all micro-batches of all dp ranks of (ce + aux).
  const float grad_scale = 1.0f / float(accum_steps_ * dp_);
  StepResult r;
  {
    ScopedPhase phase("zero_grad");
    model_.params().zero_grad();
  }
  for (int m = 0; m < accum_steps_; ++m) {
    {
      ScopedPhase phase("data");
      fill(m, tokens_.data(), targets_.data());
    }
    const bool last = m + 1 == accum_steps_;
    if (last && sync_.active()) model_.set_layer_backward_hook([this](int layer) { sync_.start_layer(layer); });
    MicroBatchLoss l = model_.forward_backward(tokens_.data(), targets_.data(), B, S, true, grad_scale);
    if (last) model_.set_layer_backward_hook({});
    r.ce += l.ce / accum_steps_;
    r.aux += l.aux / accum_steps_;
  }
  sync_.finish();
  optim_.reduce_scatter_gradients();  // ZeRO-1: the replicated parameters' gradients
  if (dp_ > 1) {
    ScopedPhase phase("loss_sync");
    double sums[2] = {r.ce, r.aux};
    groups_.dp->all_reduce_sum(sums, 2);
    r.ce = sums[0] / dp_;
    r.aux = sums[1] / dp_;
  }
  r.loss = r.ce + r.aux;
  MOE_CHECK(std::isfinite(r.loss), "loss is not finite at step " << step + 1 << " (ce " << r.ce << ", aux " << r.aux
                                                                 << "): lower optim.lr or check the data");
  ScopedPhase phase("optimizer");
  r.grad_norm = global_norm();
  const double coef = clip_coefficient(r.grad_norm, cfg_.train.grad_clip);
  if (coef != 1.0) optim_.scale_gradients(float(coef));
  r.lr = learning_rate(cfg_.optim, cfg_.train.steps, int(step + 1));
  optim_.step(r.lr);
  r.expert_load = model_.expert_loads();
  model_.end_step();
  return r;
}

// Every parameter once: replicated gradients are identical on every rank after the sync and count
// once; tp-split ones are summed over tp, experts over ep; under ZeRO-1 the shards first over dp.
double StepRunner::global_norm() {
  AdamW::GradSumsq s = optim_.grad_sumsq();
  double v[2] = {s.tp_split, s.replicated};
  if (optim_.zero()) groups_.dp->all_reduce_sum(v, 2);
  groups_.tp->all_reduce_sum(&v[0], 1);
  groups_.ep->all_reduce_sum(&s.expert, 1);
  return std::sqrt(v[0] + v[1] + s.expert);
}

}  // namespace moe
