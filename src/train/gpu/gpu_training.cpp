// GpuTraining on GpuTransformer (src/model/gpu/): StepRunner's step on one GPU per rank, data,
// tensor and expert parallel through device communicators.
#include "train/gpu_training.h"

#include <cmath>

#include "core/error.h"
#include "core/logging.h"
#include "core/profiler.h"
#include "kernels/cuda/device.h"
#include "kernels/gemm.h"
#include "model/gpu/gpu_transformer.h"
#include "optim/lr_schedule.h"
#include "parallel/gpu/device_communicators.h"

namespace moe {
namespace {

class CudaTraining : public GpuTraining {
 public:
  CudaTraining(const Config& cfg, Transformer& host, AdamW& optim, ParallelGroups& groups)
      : cfg_(cfg),
        bf16_(cfg.train.precision == "bf16"),
        accum_steps_(cfg.grad_accum_steps(groups.world->size())),
        dp_(*groups.dp) {
    MOE_CHECK(cuda::available(), cfg.source << ": train.precision bf16 trains on a GPU, and this machine has none "
                                               "that CUDA can use");
    // The device communicators select this rank's GPU before the model allocates on it.
    std::string kind;
    auto device_comm = [&](Communicator& group) {
      return group.size() > 1 ? make_device_communicator(group, &kind) : nullptr;
    };
    dp_dev_ = device_comm(*groups.dp);
    tp_dev_ = device_comm(*groups.tp);
    ep_dev_ = device_comm(*groups.ep);
    const bool tp = groups.tp_size > 1, ep = groups.ep->size() > 1;
    // the ranks holding the same experts (the world when ep is 1: then dp itself unless tp > 1)
    if (ep) expert_dp_dev_ = device_comm(*groups.expert_dp);
    // tp > 1: the router's, shared experts' (and with ep 1 the experts') gradients, each tp rank having
    // routed its own token slice, are summed over every rank, which the dp group no longer spans
    if (tp) world_dev_ = device_comm(*groups.world);
    if (groups.world->size() > 1)
      log_info(strformat("[gpu] %d ranks: dp %d x tp %d, ep %d over %s communicators; GPU %s", groups.world->size(),
                         groups.dp->size(), groups.tp_size, groups.ep->size(), kind.c_str(),
                         cuda::device_name().c_str()));
    model_ = std::make_unique<gpu::GpuTransformer>(
        cfg.model, host.params(), bf16_,
        tp_dev_ ? gpu::TensorParallel{groups.tp.get(), tp_dev_.get()} : gpu::TensorParallel{});
    model_->set_token_group(groups.world);  // every rank holds distinct tokens (under tp: its slice)
    // NCCL overlaps an exchange with the experts' kernels: pipelined chunks per MoE layer, as many as
    // the cost model finds fastest on times measured at the first step (0: choose)
    if (ep_dev_) model_->set_expert_parallel(groups.ep.get(), ep_dev_.get(), kind == "nccl" ? 0 : 1);
    // ZeRO-1: the replicated parameters' moments split over dp, their gradients reduce-scattered by
    // the optimizer step instead of summed during the backward
    const bool zero = cfg.parallel.zero == 1 && dp_dev_;
    if (zero) model_->set_zero(groups.dp.get(), dp_dev_.get());
    // replicated and tp-split gradients over dp; expert ones over the ranks that hold the same experts;
    // under tp the token-sliced ones over every rank (under ZeRO: over tp, the reduce-scatter adds dp)
    sync_ = zero ? nullptr : dp_dev_.get();
    sync_experts_ = ep ? expert_dp_dev_.get() : tp ? world_dev_.get() : dp_dev_.get();
    if (tp) sync_tokens_ = zero ? tp_dev_.get() : world_dev_.get();
    const auto& params = optim.params();
    for (size_t i = 0; i < params.size(); ++i)
      model_->upload_moments(params[i]->name, optim.moment(i, 0), optim.moment(i, 1));
    model_->set_optimizer_steps(optim.step_count());
    tokens_.resize(size_t(cfg.train.micro_batch) * cfg.train.seq_len);
    targets_.resize(tokens_.size());
  }

  StepResult run(int64_t step, const BatchFiller& fill) override {
    const int64_t B = cfg_.train.micro_batch, S = cfg_.train.seq_len;
    const int dp = dp_.size();
    // The objective is the mean over all micro-batches of all dp ranks of (ce + aux).
    const float grad_scale = 1.0f / float(accum_steps_ * dp);
    StepResult r;
    model_->zero_grad();
    for (int m = 0; m < accum_steps_; ++m) {
      {
        ScopedPhase phase("data");
        fill(m, tokens_.data(), targets_.data());
      }
      const bool last = m + 1 == accum_steps_;
      if (last) model_->set_grad_sync(sync_, sync_experts_, sync_tokens_);  // sums start layer by layer
      MicroBatchLoss l = model_->forward_backward(tokens_.data(), targets_.data(), B, S, grad_scale);
      model_->set_grad_sync(nullptr, nullptr);
      r.ce += l.ce / accum_steps_;
      r.aux += l.aux / accum_steps_;
    }
    model_->finish_grad_sync();
    if (dp > 1) {
      ScopedPhase phase("loss_sync");
      double sums[2] = {r.ce, r.aux};
      dp_.all_reduce_sum(sums, 2);
      r.ce = sums[0] / dp;
      r.aux = sums[1] / dp;
    }
    r.loss = r.ce + r.aux;
    MOE_CHECK(std::isfinite(r.loss), "loss is not finite at step " << step + 1 << " (ce " << r.ce << ", aux " << r.aux
                                                                   << "): lower optim.lr or check the data");
    r.lr = learning_rate(cfg_.optim, cfg_.train.steps, int(step + 1));
    r.grad_norm = model_->optimizer_step(cfg_.optim, r.lr, cfg_.train.grad_clip);
    r.expert_load = model_->expert_loads();
    model_->end_step();
    return r;
  }

  double validation_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S) override {
    // forward only (no balancing losses, no expert counts); grad_scale 0: the fused LM head adds zeros
    return model_->forward_backward(tokens, targets, B, S, 0.0f, /*backward=*/false).ce;
  }

  void to_host(Transformer& host, AdamW& optim) override {
    model_->download_values(host.params());
    const auto& params = optim.params();
    for (size_t i = 0; i < params.size(); ++i) {
      Tensor m = optim.moment(i, 0), v = optim.moment(i, 1);
      model_->download_moments(params[i]->name, m, v);
      optim.set_moment(i, 0, m);
      optim.set_moment(i, 1, v);
    }
    optim.set_step_count(model_->optimizer_steps());
  }

  double peak_tflops() override { return cuda::gemm_peak_tflops(bf16_); }

 private:
  const Config& cfg_;
  bool bf16_;
  int accum_steps_;
  Communicator& dp_;
  // NCCL or host-staged over the groups of more than one rank; sync_*: where gradients are summed
  std::unique_ptr<Communicator> dp_dev_, tp_dev_, world_dev_, ep_dev_, expert_dp_dev_;
  Communicator *sync_ = nullptr, *sync_experts_ = nullptr, *sync_tokens_ = nullptr;
  std::unique_ptr<gpu::GpuTransformer> model_;
  std::vector<int32_t> tokens_, targets_;
};

}  // namespace

bool gpu_training_available() { return cuda::available(); }

std::unique_ptr<GpuTraining> make_gpu_training(const Config& cfg, Transformer& host, AdamW& optim,
                                               ParallelGroups& groups) {
  return std::make_unique<CudaTraining>(cfg, host, optim, groups);
}

}  // namespace moe
