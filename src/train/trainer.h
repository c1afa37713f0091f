// The training run: data, model, optimizer, resume/init, the step loop, evaluation, checkpoints,
// logs and metrics. Construct with a finalized Config; run() returns the process exit code.
#pragma once
#include <memory>

#include "core/config.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "train/checkpoint.h"

namespace moe {

class Trainer {
 public:
  Trainer(const Config& cfg, Communicator& world);
  int run();

 private:
  CheckpointMeta timed_load(const std::string& path, Transformer& model, AdamW* optim);
  int64_t load_for_resume(const std::string& path, Transformer& model, AdamW& optim);
  int64_t resume_newest_good(Transformer& model, AdamW& optim);

  Config cfg_;
  Communicator& world_;
};

}  // namespace moe
