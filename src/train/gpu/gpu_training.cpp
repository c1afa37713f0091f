// GpuTraining on GpuTransformer (src/model/gpu/): StepRunner's step on one GPU per rank, the
// gradients summed over the dp ranks through a device communicator.
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
  CudaTraining(const Config& cfg, Transformer& host, AdamW& optim, Communicator& dp)
      : cfg_(cfg), bf16_(cfg.train.precision == "bf16"), accum_steps_(cfg.grad_accum_steps(dp.size())), dp_(dp) {
    MOE_CHECK(cuda::available(), cfg.source << ": train.precision bf16 trains on a GPU, and this machine has none "
                                               "that CUDA can use");
    if (dp.size() > 1) {  // selects this rank's GPU before the model allocates on it
      std::string kind;
      device_comm_ = make_device_communicator(dp, &kind);
      log_info(strformat("[gpu] data parallelism over %d ranks: %s communicator, GPU %s", dp.size(), kind.c_str(),
                         cuda::device_name().c_str()));
    }
    model_ = std::make_unique<gpu::GpuTransformer>(cfg.model, host.params(), bf16_);
    model_->set_token_group(&dp_);
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
      if (last) model_->set_grad_sync(device_comm_.get());  // sums start layer by layer in this backward
      MicroBatchLoss l = model_->forward_backward(tokens_.data(), targets_.data(), B, S, grad_scale);
      model_->set_grad_sync(nullptr);
      r.ce += l.ce / accum_steps_;
      r.aux += l.aux / accum_steps_;
    }
    if (device_comm_) {
      model_->finish_grad_sync();
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
  std::unique_ptr<Communicator> device_comm_;  // dp > 1: NCCL or host-staged, over dp_
  std::unique_ptr<gpu::GpuTransformer> model_;
  std::vector<int32_t> tokens_, targets_;
};

}  // namespace

bool gpu_training_available() { return cuda::available(); }

std::unique_ptr<GpuTraining> make_gpu_training(const Config& cfg, Transformer& host, AdamW& optim,
                                               Communicator& dp) {
  return std::make_unique<CudaTraining>(cfg, host, optim, dp);
}

}  // namespace moe
