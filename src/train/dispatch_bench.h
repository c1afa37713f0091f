// Micro-benchmark of the MoE exchange: TokenDispatcher dispatch + combine of `rows` rows of width D
// per rank, routed uniformly at random over E experts, against two bare all-to-all-v calls moving
// the same bytes (there and back). Collective over `ep`. Times: median over `reps`, slowest rank.
#pragma once
#include <cstdint>

#include "parallel/communicator.h"

namespace moe {

struct DispatchTiming {
  double dispatch_combine_ms = 0;
  double bare_ms = 0;
};

DispatchTiming time_dispatch_combine(Communicator& ep, int64_t num_experts, int64_t rows, int64_t D, int reps);

}  // namespace moe
