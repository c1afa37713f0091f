// Global gradient norm over every parameter (once, however sharded) and clipping by it.
#pragma once
#include <vector>

#include "model/params.h"

namespace moe {

// sqrt(sum of squares of every gradient element). Deterministic.
double global_grad_norm(const std::vector<Param*>& params);
// Scales every gradient by min(1, max_norm / norm); max_norm <= 0 disables. Returns the factor.
double clip_gradients(const std::vector<Param*>& params, double norm, double max_norm);

}  // namespace moe
