// RMSNorm layer: owns its weight [D] and the rstd of the last forward.
#pragma once
#include <string>

#include "core/tensor.h"
#include "model/params.h"

namespace moe {

class RmsNormLayer {
 public:
  RmsNormLayer(ParamStore& store, const std::string& name, int64_t D, float eps);
  // y = RMSNorm(x); x must stay alive and unchanged until backward.
  void forward(const float* x, float* y, int64_t T);
  // dx assigned, weight gradient accumulated.
  void backward(const float* dy, float* dx);

 private:
  Param& weight_;
  int64_t D_;
  float eps_;
  const float* x_ = nullptr;
  int64_t T_ = 0;
  Tensor rstd_;  // [T]
};

}  // namespace moe
