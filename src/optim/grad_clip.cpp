// Global-norm gradient clipping.
#include "optim/grad_clip.h"

#include <cmath>

#include "kernels/elementwise.h"

namespace moe {

double global_grad_norm(const std::vector<Param*>& params) {
  double ss = 0;
  for (const Param* p : params) ss += sum_squares(p->grad.data(), p->grad.numel());
  return std::sqrt(ss);
}

double clip_gradients(const std::vector<Param*>& params, double norm, double max_norm) {
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  // SPEC: scale by min(1, grad_clip / global_norm) (no epsilon in the denominator).
  double coef = max_norm / norm;
  for (Param* p : params) scale_inplace(p->grad.data(), p->grad.numel(), float(coef));
  return coef;
}

}  // namespace moe
