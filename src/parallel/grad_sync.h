// Gradient reduction in buckets: one bucket per (transformer layer, reduction group) plus one per
// group for the parameters outside the layers. A bucket's all-reduce starts as soon as its layer's
// backward is done (non-blocking), so it can run while earlier layers are still in backward;
// finish() waits for all. The group of each parameter comes from group_of (nullptr: not reduced
// here), e.g. dp for replicated weights, the expert-dp group for experts, the world for weights that
// see only a tp rank's token slice. The gradients are already scaled by 1 / (micro-batches x dp),
// so a sum gives the gradient of the global objective.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

class GradSync {
 public:
  GradSync(const std::vector<Param*>& params, const std::function<Communicator*(const Param&)>& group_of);
  void start_layer(int layer);  // parameters named layers/<layer>/...
  void start_rest();            // every bucket not yet started
  void finish();                // waits, copies the sums back into the gradients
  bool active() const { return active_; }

 private:
  struct Bucket {
    std::vector<Param*> params;
    Communicator* group = nullptr;
    std::vector<float> flat;
    std::unique_ptr<PendingOp> pending;
    bool started = false;
  };
  void start(Bucket& b);

  bool active_ = false;
  std::map<int, std::vector<Bucket>> buckets_;  // layer (-1: not in a layer) -> one bucket per group
};

}  // namespace moe
