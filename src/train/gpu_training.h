// moe-train on GPUs: train.precision bf16 trains the GPU model (src/model/gpu/), one GPU per rank,
// with data, tensor and expert parallelism over the ranks. The trainer keeps everything else (data
// order, schedule, evaluation, checkpoints, metrics); this interface is what it asks of the GPU:
// one optimizer step (StepRunner's semantics: gradient accumulation over the rank's micro-batches,
// the gradient sums over the dp (and expert-dp) ranks overlapped with the last backward, token rows
// dispatched to the experts' ranks under ep, global-norm clipping, the
// learning-rate schedule, AdamW, expert loads), a validation micro-batch's cross-entropy, and the
// weights and AdamW state copied back to the host model for a checkpoint. Built in builds with CUDA
// (gpu/gpu_training.cpp); moe-train hands its factory to the Trainer (Trainer::use_gpu), so the CPU
// libraries and their tests carry no CUDA dependency.
#pragma once
#include <cstdint>
#include <memory>

#include "core/config.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/layout.h"
#include "train/train_step.h"

namespace moe {

class GpuTraining {
 public:
  virtual ~GpuTraining() = default;
  virtual StepResult run(int64_t step, const BatchFiller& fill) = 0;
  // Cross-entropy of one micro-batch, forward only in effect (the gradients are left unchanged).
  virtual double validation_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S) = 0;
  // Weights, AdamW moments and update count -> host (the state a checkpoint saves).
  virtual void to_host(Transformer& host, AdamW& optim) = 0;
  // TFLOP/s of the GEMM peak MFU is measured against (cuBLAS, train.precision, this GPU).
  virtual double peak_tflops() = 0;
};

// Copies the host model's weights (this rank's expert shard under expert parallelism) and the
// optimizer's moments and update count (zero, or those a resumed checkpoint loaded) to the GPU.
// groups: the Trainer's process groups (they outlive the result); with more than one rank the
// factory selects this rank's GPU and makes the device communicators of dp, tp, ep, expert dp and,
// under tp, the world (parallel/gpu/device_communicators.h), collectively.
using GpuTrainingFactory = std::unique_ptr<GpuTraining> (*)(const Config& cfg, Transformer& host, AdamW& optim,
                                                          ParallelGroups& groups);

// The factory of builds with CUDA (gpu/gpu_training.cpp), and whether this machine has a GPU that
// CUDA can use (checked before any work).
std::unique_ptr<GpuTraining> make_gpu_training(const Config& cfg, Transformer& host, AdamW& optim,
                                               ParallelGroups& groups);
bool gpu_training_available();

}  // namespace moe
