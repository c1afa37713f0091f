// GpuTraining on GpuTransformer (src/model/gpu/): StepRunner's step on one GPU.
#include "train/gpu_training.h"

#include <cmath>

#include "core/error.h"
#include "core/profiler.h"
#include "kernels/cuda/device.h"
#include "kernels/gemm.h"
#include "model/gpu/gpu_transformer.h"
#include "optim/lr_schedule.h"

namespace moe {
namespace {

class CudaTraining : public GpuTraining {
 public:
  CudaTraining(const Config& cfg, Transformer& host, AdamW& optim)
      : cfg_(cfg), bf16_(cfg.train.precision == "bf16"), accum_steps_(cfg.grad_accum_steps(1)) {
    MOE_CHECK(cuda::available(), cfg.source << ": train.precision bf16 trains on a GPU, and this machine has none "
                                               "that CUDA can use");
    model_ = std::make_unique<gpu::GpuTransformer>(cfg.model, host.params(), bf16_);
    const auto& params = optim.params();
    for (size_t i = 0; i < params.size(); ++i)
      model_->upload_moments(params[i]->name, optim.moment(i, 0), optim.moment(i, 1));
    model_->set_optimizer_steps(optim.step_count());
    tokens_.resize(size_t(cfg.train.micro_batch) * cfg.train.seq_len);
    targets_.resize(tokens_.size());
  }

  StepResult run(int64_t step, const BatchFiller& fill) override {
    const int64_t B = cfg_.train.micro_batch, S = cfg_.train.seq_len;
    StepResult r;
    model_->zero_grad();
    for (int m = 0; m < accum_steps_; ++m) {
      {
        ScopedPhase phase("data");
        fill(m, tokens_.data(), targets_.data());
      }
      MicroBatchLoss l = model_->forward_backward(tokens_.data(), targets_.data(), B, S, 1.0f / float(accum_steps_));
      r.ce += l.ce / accum_steps_;
      r.aux += l.aux / accum_steps_;
    }
    r.loss = r.ce + r.aux;
    MOE_CHECK(std::isfinite(r.loss), "loss is not finite at step " << step + 1 << " (ce " << r.ce << ", aux " << r.aux
                                                                   << "): lower optim.lr or check the data");
    r.lr = learning_rate(cfg_.optim, cfg_.train.steps, int(step + 1));
    r.grad_norm = model_->optimizer_step(cfg_.optim, r.lr, cfg_.train.grad_clip);
    r.expert_load = model_->take_expert_loads();
    return r;
  }

  double validation_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S) override {
    // grad_scale 0: every gradient the backward adds is zero, and the expert loads it counts are
    // not the training step's
    const double ce = model_->forward_backward(tokens, targets, B, S, 0.0f).ce;
    model_->take_expert_loads();
    return ce;
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
  std::unique_ptr<gpu::GpuTransformer> model_;
  std::vector<int32_t> tokens_, targets_;
};

}  // namespace

bool gpu_training_available() { return cuda::available(); }

std::unique_ptr<GpuTraining> make_gpu_training(const Config& cfg, Transformer& host, AdamW& optim) {
  return std::make_unique<CudaTraining>(cfg, host, optim);
}

}  // namespace moe
