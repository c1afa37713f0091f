// ZeRO-1 for the replicated (dense) parameters: their AdamW moments are split over the dp group.
// The parameters are viewed as one flat vector padded to a multiple of dp; rank r owns elements
// [r * shard, (r + 1) * shard). Per step: reduce-scatter of the gradients into the owned shard,
// AdamW on the shard (decay only for parameters of rank >= 2), all-gather of the updated values.
// All methods marked collective must be called by every rank of the group in the same order.
#pragma once
#include <vector>

#include "core/tensor.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

class Zero1Shard {
 public:
  Zero1Shard(std::vector<Param*> params, Communicator* dp);
  const std::vector<Param*>& params() const { return params_; }

  void reduce_scatter_grads();  // collective: sums the gradients over dp into the owned shard
  // Sum of squares of the owned shard of the summed gradient, over the parameters split over tp
  // (tp_split = true) or the others.
  double grad_sumsq(bool tp_split) const;
  void scale_grads(float s);
  // collective: AdamW on the owned shard, then every rank receives every updated value.
  void update(float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2);

  // collective: the moment (0: exp_avg, 1: exp_avg_sq) of params()[i] at its full shape.
  Tensor full_moment(size_t i, int which);
  // Takes this rank's part of a full-shape moment of params()[i].
  void set_moment(size_t i, int which, const Tensor& full);

 private:
  template <class F>
  void for_each_piece(F&& f) const;  // f(param index, first element in param, count, offset in shard)

  std::vector<Param*> params_;
  Communicator* dp_;
  std::vector<int64_t> offset_;  // flat offset of each parameter
  int64_t total_ = 0, shard_ = 0, lo_ = 0;
  std::vector<float> flat_, grad_shard_, m_, v_;
};

}  // namespace moe
