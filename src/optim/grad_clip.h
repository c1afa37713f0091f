// Global gradient norm over every parameter (once, however sharded) and clipping by it.
#pragma once
#include <vector>

#include "model/params.h"

namespace moe {

// sqrt(sum of squares of every gradient element). Deterministic.
double global_grad_norm(const std::vector<Param*>& params);
// min(1, max_norm / norm); 1 when max_norm <= 0 (clipping off).
double clip_coefficient(double norm, double max_norm);
// Scales every gradient by clip_coefficient(norm, max_norm). Returns the factor.
double clip_gradients(const std::vector<Param*>& params, double norm, double max_norm);

}  // namespace moe
