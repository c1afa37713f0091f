// The training run: data, model, optimizer, resume/init, the step loop, evaluation, checkpoints,
// logs and metrics. Construct with a finalized Config; run() returns the process exit code.
#pragma once
#include <memory>

#include "core/config.h"
#include "parallel/communicator.h"

namespace moe {

class Trainer {
 public:
  Trainer(const Config& cfg, Communicator& world);
  int run();

 private:
  Config cfg_;
  Communicator& world_;
};

}  // namespace moe
