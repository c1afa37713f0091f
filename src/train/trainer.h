// The training run: data, model, optimizer, resume/init, the step loop, evaluation, checkpoints,
// logs and metrics. Construct with a finalized Config; run() returns the process exit code.
#pragma once
#include <memory>

#include "core/config.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "train/checkpoint.h"
#include "train/gpu_training.h"

namespace moe {

class Trainer {
 public:
  Trainer(const Config& cfg, Communicator& world);
  // How this program trains on a GPU (train.precision bf16): moe-train passes make_gpu_training and
  // gpu_training_available in builds with CUDA; without them bf16 is refused with a message.
  void use_gpu(GpuTrainingFactory factory, bool (*available)()) { gpu_factory_ = factory, gpu_available_ = available; }
  int run();

 private:
  CheckpointMeta timed_load(const std::string& path, Transformer& model, AdamW* optim);
  int64_t load_for_resume(const std::string& path, Transformer& model, AdamW& optim);
  int64_t resume_newest_good(Transformer& model, AdamW& optim);

  Config cfg_;
  Communicator& world_;
  GpuTrainingFactory gpu_factory_ = nullptr;
  bool (*gpu_available_)() = nullptr;
};

}  // namespace moe
