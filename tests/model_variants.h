// The model variants the whole-model tests run: every routing option of SPEC section 1.
#pragma once
#include <ostream>
#include <string>
#include <vector>

#include "core/config.h"

namespace moe::test {

struct ModelVariant {
  std::string name;
  std::vector<std::string> overrides;  // --set style, on top of the base tiny model
};

inline void PrintTo(const ModelVariant& v, std::ostream* os) { *os << v.name; }

inline std::vector<ModelVariant> model_variants() {
  return {
      {"softmax_top2_micro", {}},
      {"dense_only", {"model.moe.num_experts=0"}},
      {"sigmoid_top3_shared_seq_zloss",
       {"model.moe.score=sigmoid", "model.moe.norm_topk=false", "model.moe.top_k=3", "model.moe.num_experts=6",
        "model.moe.num_shared_experts=2", "model.moe.shared_expert_hidden=6", "model.moe.lbl_scope=seq",
        "model.moe.z_loss_coef=0.01"}},
      {"capacity_global_tied_dense_pattern",
       {"model.moe.capacity_factor=1.0", "model.moe.lbl_scope=global", "model.tie_embeddings=true",
        "model.n_layers=3", "model.moe.first_dense_layers=1", "model.moe.layer_freq=2"}},
      {"bias_balancing_sigmoid_top1",
       {"model.moe.router.bias_update_rate=0.01", "model.moe.score=sigmoid", "model.moe.top_k=1",
        "model.n_kv_heads=1"}},
      {"fine_grained_top4_of_8",
       {"model.moe.num_experts=8", "model.moe.top_k=4", "model.moe.expert_hidden=8", "model.moe.capacity_factor=1.5",
        "model.moe.num_shared_experts=1"}},
  };
}

inline Config variant_config(const ModelVariant& v) {
  const char* base = R"(
model:
  vocab_size: 40
  d_model: 16
  n_layers: 2
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 20
  max_seq_len: 8
  init_std: 0.3
  moe: {num_experts: 4, top_k: 2, expert_hidden: 12, aux_loss_coef: 0.05, z_loss_coef: 0.0}
train: {seq_len: 8, micro_batch: 3, global_batch: 3, steps: 2}
)";
  Config c = parse_config(base, v.name, v.overrides);
  c.finalize(1, /*need_data=*/false);
  return c;
}

}  // namespace moe::test
