// AdamW optimizer state and step over the parameter registry (PyTorch semantics, SPEC section 3).
#pragma once
#include <vector>

#include "core/config.h"
#include "core/tensor.h"
#include "model/params.h"

namespace moe {

class AdamW {
 public:
  AdamW(const OptimConfig& cfg, std::vector<Param*> params);
  // Applies one update with learning rate lr; increments step().
  void step(double lr);
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  // Moments, index-aligned with params().
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  const std::vector<Param*>& params() const { return params_; }

 private:
  OptimConfig cfg_;
  std::vector<Param*> params_;
  std::vector<Tensor> m_, v_;
  int64_t step_ = 0;
};

}  // namespace moe
