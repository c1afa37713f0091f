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

double clip_coefficient(double norm, double max_norm) {
  // SPEC: scale by min(1, grad_clip / global_norm) (no epsilon in the denominator).
  if (max_norm <= 0 || !(norm > max_norm)) return 1.0;
  return max_norm / norm;
}

double clip_gradients(const std::vector<Param*>& params, double norm, double max_norm) {
  double coef = clip_coefficient(norm, max_norm);
  if (coef == 1.0) return coef;
  for (Param* p : params) scale_inplace(p->grad.data(), p->grad.numel(), float(coef));
  return coef;
}

}  // namespace moe
