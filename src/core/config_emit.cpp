// Config -> resolved YAML text (every key, defaults filled): logged at start, stored in checkpoints.
#include <yaml-cpp/yaml.h>

#include "core/config.h"

namespace moe {

std::string config_to_yaml(const Config& c) {
  YAML::Emitter out;
  out.SetDoublePrecision(17);
  auto kv = [&](const char* k, const auto& v) { out << YAML::Key << k << YAML::Value << v; };
  auto section = [&](const char* k) { out << YAML::Key << k << YAML::Value << YAML::BeginMap; };
  out << YAML::BeginMap;
  section("run");
  kv("name", c.run.name);
  kv("out_dir", c.run.out_dir);
  kv("seed", c.run.seed);
  out << YAML::EndMap;

  const auto& m = c.model;
  section("model");
  kv("vocab_size", m.vocab_size);
  kv("d_model", m.d_model);
  kv("n_layers", m.n_layers);
  kv("n_heads", m.n_heads);
  kv("n_kv_heads", m.n_kv_heads);
  kv("ffn_hidden", m.ffn_hidden);
  kv("max_seq_len", m.max_seq_len);
  kv("rope_theta", m.rope_theta);
  kv("norm_eps", m.norm_eps);
  kv("tie_embeddings", m.tie_embeddings);
  kv("init_std", m.init_std);
  section("moe");
  const auto& e = m.moe;
  kv("num_experts", e.num_experts);
  kv("top_k", e.top_k);
  kv("expert_hidden", e.expert_hidden);
  kv("num_shared_experts", e.num_shared_experts);
  kv("shared_expert_hidden", e.shared_expert_hidden);
  kv("first_dense_layers", e.first_dense_layers);
  kv("layer_freq", e.layer_freq);
  kv("score", e.score);
  kv("norm_topk", e.norm_topk);
  kv("capacity_factor", e.capacity_factor);
  kv("aux_loss_coef", e.aux_loss_coef);
  kv("z_loss_coef", e.z_loss_coef);
  kv("lbl_scope", e.lbl_scope);
  section("router");
  kv("bias_update_rate", e.router.bias_update_rate);
  out << YAML::EndMap << YAML::EndMap << YAML::EndMap;

  section("parallel");
  kv("tp", c.parallel.tp);
  kv("ep", c.parallel.ep);
  kv("expert_sharding", c.parallel.expert_sharding);
  kv("zero", c.parallel.zero);
  out << YAML::EndMap;

  const auto& t = c.train;
  section("train");
  kv("seq_len", t.seq_len);
  kv("global_batch", t.global_batch);
  kv("micro_batch", t.micro_batch);
  kv("steps", t.steps);
  kv("precision", t.precision);
  kv("grad_clip", t.grad_clip);
  kv("log_every", t.log_every);
  kv("eval_every", t.eval_every);
  kv("eval_batches", t.eval_batches);
  out << YAML::EndMap;

  const auto& o = c.optim;
  section("optim");
  kv("lr", o.lr);
  kv("min_lr", o.min_lr);
  kv("warmup_steps", o.warmup_steps);
  kv("schedule", o.schedule);
  kv("beta1", o.beta1);
  kv("beta2", o.beta2);
  kv("eps", o.eps);
  kv("weight_decay", o.weight_decay);
  out << YAML::EndMap;

  section("data");
  kv("train", c.data.train);
  kv("valid", c.data.valid);
  kv("token_dtype", c.data.token_dtype);
  kv("shuffle", c.data.shuffle);
  out << YAML::EndMap;

  section("checkpoint");
  kv("dir", c.checkpoint.dir);
  kv("every", c.checkpoint.every);
  kv("keep", c.checkpoint.keep);
  kv("resume", c.checkpoint.resume);
  kv("init_from", c.checkpoint.init_from);
  out << YAML::EndMap;

  section("profile");
  kv("breakdown_every", c.profile.breakdown_every);
  kv("trace", c.profile.trace);
  out << YAML::Key << "trace_steps" << YAML::Value << YAML::Flow << c.profile.trace_steps;
  out << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace moe
