// Data-parallel gradient reduction in buckets: one bucket per transformer layer (dense and expert
// parameters apart) plus one for the rest. A bucket's all-reduce starts as soon as its layer's
// backward is done (non-blocking), so it can run while earlier layers are still in backward;
// finish() waits for all. Dense gradients are summed over the dp group, expert gradients over the
// expert-data-parallel group (the ranks holding the same experts). The gradients are already scaled
// by 1 / (micro-batches x dp), so a sum gives the gradient of the global objective.
#pragma once
#include <map>
#include <memory>
#include <vector>

#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

class GradSync {
 public:
  // dense_group == nullptr: the replicated parameters are reduced elsewhere (ZeRO-1 reduce-scatter).
  GradSync(const std::vector<Param*>& params, Communicator* dense_group, Communicator* expert_group);
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
  std::map<int, std::vector<Bucket>> buckets_;  // layer (-1: not in a layer) -> dense, expert
};

}  // namespace moe
