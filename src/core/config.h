// Typed configuration (SPEC section 2). Parsed once from YAML; nothing downstream looks keys up by
// string. Every field carries its SPEC default; required fields start at 0/"" and validate() names them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct RunConfig {
  std::string name = "moe-train";
  std::string out_dir;  // default: runs/<name>
  int64_t seed = 1234;
};

struct RouterConfig {
  double bias_update_rate = 0.0;
};

struct MoeConfig {
  int num_experts = 0;
  int top_k = 2;
  int expert_hidden = 0;  // default: model.ffn_hidden
  int num_shared_experts = 0;
  int shared_expert_hidden = 0;  // default: expert_hidden
  int first_dense_layers = 0;
  int layer_freq = 1;
  std::string score = "softmax";  // softmax | sigmoid
  bool norm_topk = true;
  double capacity_factor = 0.0;  // <= 0: dropless
  double aux_loss_coef = 0.01;
  double z_loss_coef = 0.0;
  std::string lbl_scope = "micro";  // micro | global | seq
  RouterConfig router;
};

struct ModelConfig {
  int vocab_size = 0;
  int d_model = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;   // default: n_heads
  int ffn_hidden = 0;   // default: 4 * d_model
  int max_seq_len = 0;  // default: train.seq_len
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  double init_std = 0.02;
  MoeConfig moe;

  int head_dim() const { return d_model / n_heads; }
  bool is_moe_layer(int layer) const {
    return moe.num_experts > 0 && layer >= moe.first_dense_layers &&
           (layer - moe.first_dense_layers) % moe.layer_freq == 0;
  }
};

struct ParallelConfig {
  int tp = 1;
  int ep = 1;
  std::string expert_sharding = "ep";  // ep | fssdp
  int zero = 0;
};

struct TrainConfig {
  int seq_len = 0;  // default: model.max_seq_len
  int global_batch = 0;  // default: micro_batch * dp
  int micro_batch = 1;
  int steps = 0;
  std::string precision = "fp32";
  double grad_clip = 1.0;  // 0: off
  int log_every = 1;
  int eval_every = 0;  // 0: never
  int eval_batches = 1;
};

struct OptimConfig {
  double lr = 3e-4;
  double min_lr = 0.0;
  int warmup_steps = 0;
  std::string schedule = "cosine";  // cosine | linear | constant
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

struct DataConfig {
  std::string train;
  std::string valid;
  std::string token_dtype = "uint16";  // uint16 | uint32
  bool shuffle = true;
};

struct CheckpointConfig {
  std::string dir;  // default: <out_dir>/checkpoints
  int every = 0;    // 0: never
  int keep = 3;
  std::string resume = "auto";  // auto | never | PATH
  std::string init_from;
};

struct ProfileConfig {
  bool enabled = true;  // false: no phase timing at all (no breakdown in the log or metrics.jsonl)
  int breakdown_every = 0;
  bool trace = false;
  std::vector<int> trace_steps = {0, 0};
};

struct Config {
  RunConfig run;
  ModelConfig model;
  ParallelConfig parallel;
  TrainConfig train;
  OptimConfig optim;
  DataConfig data;
  CheckpointConfig checkpoint;
  ProfileConfig profile;
  std::string source;  // file the config came from, for messages

  int dp(int world_size) const { return world_size / parallel.tp; }
  int grad_accum_steps(int world_size) const {
    return train.global_batch / (train.micro_batch * dp(world_size));
  }
  // Fills defaults that depend on other keys, then checks every rule; throws moe::Error naming the
  // key and the rule. `need_data`: the train file must be named (false for the benchmark).
  void finalize(int world_size, bool need_data = true);
};

// Parses YAML text; `overrides` are "a.b=value" strings applied before typing. Unknown keys and
// wrong types throw moe::Error naming `source` and the key. Does not call finalize().
Config parse_config(const std::string& yaml_text, const std::string& source,
                    const std::vector<std::string>& overrides = {});
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The resolved config (every key, defaults filled) as YAML text.
std::string config_to_yaml(const Config& cfg);

}  // namespace moe
