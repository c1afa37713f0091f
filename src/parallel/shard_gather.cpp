// Gathering split parameters.
#include "parallel/shard_gather.h"

#include <cstring>
#include <vector>

#include "core/error.h"

namespace moe {

Tensor gather_full_tensor(const Param& p, const Tensor& local, const ShardGroups& groups) {
  if (!p.sharded()) return local;
  Communicator* g = p.split == Split::Ep ? groups.ep : groups.tp;
  const int d = p.shard_dim;
  MOE_CHECK(g != nullptr && g->size() * local.dim(d) == p.full_shape[d],
            "parameter '" << p.name << "' is split but no matching group was given");
  std::vector<float> parts(size_t(local.numel() * g->size()));
  g->all_gather(local.data(), parts.data(), local.numel());
  // Slice r of every outer index goes to its place along dimension d.
  Tensor full = Tensor::empty(p.full_shape);
  int64_t inner = 1;
  for (int i = d + 1; i < local.rank(); ++i) inner *= local.dim(i);
  const int64_t span = local.dim(d) * inner, outer = local.numel() / span;
  for (int r = 0; r < g->size(); ++r)
    for (int64_t o = 0; o < outer; ++o)
      std::memcpy(full.data() + o * span * g->size() + r * span, parts.data() + r * local.numel() + o * span,
                  sizeof(float) * span);
  return full;
}

}  // namespace moe
