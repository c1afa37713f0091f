// Process groups from the rank layout.
#include "parallel/layout.h"

#include "core/error.h"

namespace moe {

ParallelGroups ParallelGroups::build(Communicator& world, const Config& cfg) {
  const auto& p = cfg.parallel;
  const int r = world.rank(), n = world.size();
  MOE_CHECK(n % p.tp == 0 && n % p.ep == 0, "parallel layout tp=" << p.tp << " ep=" << p.ep
                                                                   << " does not divide " << n << " ranks");
  const auto& m = cfg.model;
  auto divides = [&](int64_t value, const char* key) {
    MOE_CHECK(value % p.tp == 0, cfg.source << ": " << key << " (" << value << ") must be divisible by parallel.tp ("
                                            << p.tp << ")");
  };
  divides(m.n_heads, "model.n_heads");
  divides(m.n_kv_heads, "model.n_kv_heads");
  divides(m.ffn_hidden, "model.ffn_hidden");
  divides(m.vocab_size, "model.vocab_size");
  divides(int64_t(cfg.train.micro_batch) * cfg.train.seq_len, "train.micro_batch x train.seq_len (MoE token slices)");
  MOE_CHECK(p.expert_sharding == "ep",
            cfg.source << ": parallel.expert_sharding = fssdp is not available in this version (FSSDP is planned); use ep");
  ParallelGroups g;
  g.world = &world;
  g.tp_size = p.tp;
  g.dp_size = n / p.tp;
  g.dp_rank = r / p.tp;
  g.dp = world.split(r % p.tp, r);
  g.tp = world.split(r / p.tp, r);
  g.ep = world.split(r / p.ep, r);
  g.expert_dp = world.split(r % p.ep, r);
  return g;
}

}  // namespace moe
