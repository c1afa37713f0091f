// Learning-rate schedule.
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace moe {

double learning_rate(const OptimConfig& o, int total_steps, int s) {
  if (o.warmup_steps > 0 && s <= o.warmup_steps) return o.lr * double(s) / double(o.warmup_steps);
  if (o.schedule == "constant" || total_steps <= o.warmup_steps) return o.lr;
  double x = std::min(1.0, double(s - o.warmup_steps) / double(total_steps - o.warmup_steps));
  if (o.schedule == "linear") return o.lr - (o.lr - o.min_lr) * x;
  return o.min_lr + (o.lr - o.min_lr) * (1.0 + std::cos(M_PI * x)) / 2.0;
}

}  // namespace moe
