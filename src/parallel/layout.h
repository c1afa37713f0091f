// Rank layout and process groups (docs/parallelism.md). World rank r has tp_rank = r % tp and
// dp_rank = r / tp: a tensor-parallel group is tp consecutive ranks sharing one replica of the
// attention and dense layers. In MoE layers each tp rank takes its own slice of the replica's
// tokens, so every rank holds distinct tokens and the token group is the world; the expert-parallel
// group is ep consecutive ranks (ep_rank = r % ep) and the expert-data-parallel group joins the
// ranks holding the same experts (same r % ep).
#pragma once
#include <memory>

#include "core/config.h"
#include "parallel/communicator.h"

namespace moe {

struct ParallelGroups {
  Communicator* world = nullptr;
  std::unique_ptr<Communicator> dp;         // replicas of the dense parameters (same tp_rank)
  std::unique_ptr<Communicator> tp;         // one replica, split by heads / columns / vocabulary
  std::unique_ptr<Communicator> ep;         // experts split over these ranks
  std::unique_ptr<Communicator> expert_dp;  // replicas of the same experts
  int tp_size = 1, dp_size = 1, dp_rank = 0;

  // Collective over world. Throws (before any work) on a layout this build cannot run.
  static ParallelGroups build(Communicator& world, const Config& cfg);
};

}  // namespace moe
