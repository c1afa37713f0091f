// Reassembles a split parameter (or a tensor shaped like it, e.g. an AdamW moment) at its full
// logical shape from the slices held by the ranks of the group that split it.
#pragma once
#include "core/tensor.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

struct ShardGroups {  // the groups over which split parameters are gathered (null: one rank)
  Communicator* tp = nullptr;
  Communicator* ep = nullptr;
};

// Collective over the group that split p (tp or ep); returns `local` itself when p is not split.
Tensor gather_full_tensor(const Param& p, const Tensor& local, const ShardGroups& groups);

}  // namespace moe
