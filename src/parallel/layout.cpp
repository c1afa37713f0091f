// Process groups from the rank layout.
#include "parallel/layout.h"

#include "core/error.h"

namespace moe {

ParallelGroups ParallelGroups::build(Communicator& world, const Config& cfg) {
  const auto& p = cfg.parallel;
  const int r = world.rank(), n = world.size();
  MOE_CHECK(n % p.tp == 0 && n % p.ep == 0, "parallel layout tp=" << p.tp << " ep=" << p.ep
                                                                   << " does not divide " << n << " ranks");
  MOE_CHECK(p.tp == 1, cfg.source << ": parallel.tp = " << p.tp
                                  << ": tensor parallelism is not implemented yet; use tp: 1");
  MOE_CHECK(p.expert_sharding == "ep",
            cfg.source << ": parallel.expert_sharding = fssdp is not implemented yet; use ep");
  ParallelGroups g;
  g.world = &world;
  g.tp = p.tp;
  g.dp_size = n / p.tp;
  g.dp_rank = r / p.tp;
  g.dp = world.split(r % p.tp, r);
  g.ep = world.split(r / p.ep, r);
  g.expert_dp = world.split(r % p.ep, r);
  return g;
}

}  // namespace moe
