// AdamW optimizer state and step over the parameter registry (PyTorch semantics, SPEC section 3).
// With a ZeRO group of more than one rank, the state of the replicated (non-expert) parameters is
// sharded over it (zero1.h); expert parameters keep whole per-rank state.
#pragma once
#include <memory>
#include <vector>

#include "core/config.h"
#include "core/tensor.h"
#include "model/params.h"
#include "optim/zero1.h"
#include "parallel/communicator.h"

namespace moe {

class AdamW {
 public:
  AdamW(const OptimConfig& cfg, std::vector<Param*> params, Communicator* zero_group = nullptr);
  // ZeRO: collective; call after the gradients are complete and before step() (sums the replicated
  // parameters' gradients over the group). Without ZeRO: nothing.
  void reduce_scatter_gradients();
  // Sums of squares of this rank's gradients, by how the parameters are split: over tp (sum over the
  // tp group for the whole), not split (identical on every rank: count once), over ep (sum over the
  // ep group). Under ZeRO the first two are this rank's shard: sum them over the ZeRO group first.
  struct GradSumsq {
    double tp_split = 0, replicated = 0, expert = 0;
  };
  GradSumsq grad_sumsq() const;
  bool zero() const { return zero_ != nullptr; }
  void scale_gradients(float s);  // clipping
  // Applies one update with learning rate lr; increments step_count(). Collective under ZeRO.
  void step(double lr);
  int64_t step_count() const { return step_; }
  void set_step_count(int64_t s) { step_ = s; }
  const std::vector<Param*>& params() const { return params_; }
  // Moment (0: exp_avg, 1: exp_avg_sq) of params()[i] at the parameter's local shape; collective
  // under ZeRO for replicated parameters (every rank, same order).
  Tensor moment(size_t i, int which);
  void set_moment(size_t i, int which, const Tensor& value);

 private:
  OptimConfig cfg_;
  std::vector<Param*> params_;
  std::vector<Tensor> m_, v_;         // per parameter; undefined for ZeRO-managed ones
  std::vector<int> zero_index_;       // index into zero_->params(), or -1
  std::unique_ptr<Zero1Shard> zero_;
  int64_t step_ = 0;
};

}  // namespace moe
