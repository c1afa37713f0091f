// The one list of config keys (SPEC section 2), walked by the YAML reader and the YAML writer, so
// the two can never disagree. A visitor provides begin(section), end(), and field(key, value&).
#pragma once
#include "core/config.h"

namespace moe {

template <class Visitor>
void visit_config_fields(Config& c, Visitor& v) {
  v.begin("run");
  v.field("name", c.run.name);
  v.field("out_dir", c.run.out_dir);
  v.field("seed", c.run.seed);
  v.end();

  auto& m = c.model;
  v.begin("model");
  v.field("vocab_size", m.vocab_size);
  v.field("d_model", m.d_model);
  v.field("n_layers", m.n_layers);
  v.field("n_heads", m.n_heads);
  v.field("n_kv_heads", m.n_kv_heads);
  v.field("ffn_hidden", m.ffn_hidden);
  v.field("max_seq_len", m.max_seq_len);
  v.field("rope_theta", m.rope_theta);
  v.field("norm_eps", m.norm_eps);
  v.field("tie_embeddings", m.tie_embeddings);
  v.field("init_std", m.init_std);
  auto& e = m.moe;
  v.begin("moe");
  v.field("num_experts", e.num_experts);
  v.field("top_k", e.top_k);
  v.field("expert_hidden", e.expert_hidden);
  v.field("num_shared_experts", e.num_shared_experts);
  v.field("shared_expert_hidden", e.shared_expert_hidden);
  v.field("first_dense_layers", e.first_dense_layers);
  v.field("layer_freq", e.layer_freq);
  v.field("score", e.score);
  v.field("norm_topk", e.norm_topk);
  v.field("capacity_factor", e.capacity_factor);
  v.field("aux_loss_coef", e.aux_loss_coef);
  v.field("z_loss_coef", e.z_loss_coef);
  v.field("lbl_scope", e.lbl_scope);
  v.begin("router");
  v.field("bias_update_rate", e.router.bias_update_rate);
  v.end();
  v.end();
  v.end();

  v.begin("parallel");
  v.field("tp", c.parallel.tp);
  v.field("ep", c.parallel.ep);
  v.field("expert_sharding", c.parallel.expert_sharding);
  v.field("zero", c.parallel.zero);
  v.end();

  auto& t = c.train;
  v.begin("train");
  v.field("seq_len", t.seq_len);
  v.field("global_batch", t.global_batch);
  v.field("micro_batch", t.micro_batch);
  v.field("steps", t.steps);
  v.field("precision", t.precision);
  v.field("grad_clip", t.grad_clip);
  v.field("log_every", t.log_every);
  v.field("eval_every", t.eval_every);
  v.field("eval_batches", t.eval_batches);
  v.end();

  auto& o = c.optim;
  v.begin("optim");
  v.field("lr", o.lr);
  v.field("min_lr", o.min_lr);
  v.field("warmup_steps", o.warmup_steps);
  v.field("schedule", o.schedule);
  v.field("beta1", o.beta1);
  v.field("beta2", o.beta2);
  v.field("eps", o.eps);
  v.field("weight_decay", o.weight_decay);
  v.end();

  v.begin("data");
  v.field("train", c.data.train);
  v.field("valid", c.data.valid);
  v.field("token_dtype", c.data.token_dtype);
  v.field("shuffle", c.data.shuffle);
  v.end();

  v.begin("checkpoint");
  v.field("dir", c.checkpoint.dir);
  v.field("every", c.checkpoint.every);
  v.field("keep", c.checkpoint.keep);
  v.field("resume", c.checkpoint.resume);
  v.field("init_from", c.checkpoint.init_from);
  v.end();

  v.begin("profile");
  v.field("enabled", c.profile.enabled);
  v.field("breakdown_every", c.profile.breakdown_every);
  v.field("trace", c.profile.trace);
  v.field("trace_steps", c.profile.trace_steps);
  v.end();
}

}  // namespace moe
