// Learning rate at update s (1-based), SPEC section 3: linear warmup, then cosine, linear or constant.
#pragma once
#include "core/config.h"

namespace moe {

double learning_rate(const OptimConfig& optim, int total_steps, int update);

}  // namespace moe
