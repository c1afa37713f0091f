// Profile statistics over ranks and over experts, for the breakdown table and metrics.jsonl.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "parallel/communicator.h"

namespace moe {

using PhaseTimes = std::vector<std::pair<std::string, double>>;

struct PhaseStats {
  PhaseTimes mean, max;  // over ranks, for the phases of rank 0 (a phase a rank lacks counts as 0)
};

// Sum of the communication phases (is_communication_phase): the step's exposed communication.
double communication_ms(const PhaseTimes& phases);

// Collective over world.
PhaseStats reduce_phases(const PhaseTimes& mine, Communicator& world);

// max / mean of tokens per expert, and per expert-parallel rank (experts grouped in ep blocks).
struct LoadImbalance {
  double per_expert = 0, per_rank = 0;
};
LoadImbalance load_imbalance(const std::vector<int64_t>& tokens_per_expert, int ep);

}  // namespace moe
