// Config::finalize: derived defaults and every rule of SPEC section 2, checked before any work.
#include <cmath>

#include "core/config.h"
#include "core/error.h"

namespace moe {

#define RULE(cond, key, msg) MOE_CHECK(cond, source << ": " << key << " " << msg)

void Config::finalize(int world_size, bool need_data) {
  auto& m = model;
  auto& e = model.moe;
  auto& t = train;
  auto& o = optim;

  // ---- defaults that depend on other keys ----
  if (run.out_dir.empty()) run.out_dir = "runs/" + run.name;
  if (m.n_kv_heads == 0) m.n_kv_heads = m.n_heads;
  if (m.ffn_hidden == 0) m.ffn_hidden = 4 * m.d_model;
  if (m.max_seq_len == 0) m.max_seq_len = t.seq_len;
  if (t.seq_len == 0) t.seq_len = m.max_seq_len;
  if (e.expert_hidden == 0) e.expert_hidden = m.ffn_hidden;
  if (e.shared_expert_hidden == 0) e.shared_expert_hidden = e.expert_hidden;
  if (checkpoint.dir.empty()) checkpoint.dir = run.out_dir + "/checkpoints";

  // ---- model ----
  RULE(m.vocab_size >= 2, "model.vocab_size", "is required and must be >= 2, got " << m.vocab_size);
  RULE(m.d_model > 0, "model.d_model", "is required and must be > 0, got " << m.d_model);
  RULE(m.n_layers > 0, "model.n_layers", "is required and must be > 0, got " << m.n_layers);
  RULE(m.n_heads > 0, "model.n_heads", "is required and must be > 0, got " << m.n_heads);
  RULE(m.d_model % m.n_heads == 0, "model.d_model",
       "(" << m.d_model << ") must be divisible by model.n_heads (" << m.n_heads << ")");
  RULE(m.head_dim() % 2 == 0, "model.d_model / model.n_heads", "(head dim " << m.head_dim() << ") must be even for RoPE");
  RULE(m.n_kv_heads > 0 && m.n_heads % m.n_kv_heads == 0, "model.n_kv_heads",
       "(" << m.n_kv_heads << ") must be > 0 and divide model.n_heads (" << m.n_heads << ")");
  RULE(m.ffn_hidden > 0, "model.ffn_hidden", "must be > 0, got " << m.ffn_hidden);
  RULE(m.max_seq_len > 0, "model.max_seq_len", "or train.seq_len is required (> 0)");
  RULE(m.rope_theta > 0, "model.rope_theta", "must be > 0, got " << m.rope_theta);
  RULE(m.norm_eps > 0, "model.norm_eps", "must be > 0, got " << m.norm_eps);
  RULE(m.init_std > 0, "model.init_std", "must be > 0, got " << m.init_std);

  // ---- moe ----
  RULE(e.num_experts >= 0, "model.moe.num_experts", "must be >= 0, got " << e.num_experts);
  if (e.num_experts > 0) {
    RULE(e.top_k >= 1 && e.top_k <= e.num_experts, "model.moe.top_k",
         "must be in [1, num_experts=" << e.num_experts << "], got " << e.top_k);
    RULE(e.expert_hidden > 0, "model.moe.expert_hidden", "must be > 0, got " << e.expert_hidden);
    RULE(e.num_shared_experts >= 0, "model.moe.num_shared_experts", "must be >= 0");
    RULE(e.shared_expert_hidden > 0, "model.moe.shared_expert_hidden", "must be > 0");
    RULE(e.first_dense_layers >= 0, "model.moe.first_dense_layers", "must be >= 0");
    RULE(e.layer_freq >= 1, "model.moe.layer_freq", "must be >= 1, got " << e.layer_freq);
    RULE(e.score == "softmax" || e.score == "sigmoid", "model.moe.score",
         "must be softmax or sigmoid, got '" << e.score << "'");
    RULE(e.lbl_scope == "micro" || e.lbl_scope == "global" || e.lbl_scope == "seq", "model.moe.lbl_scope",
         "must be micro, global or seq, got '" << e.lbl_scope << "'");
    RULE(e.aux_loss_coef >= 0, "model.moe.aux_loss_coef", "must be >= 0");
    RULE(e.z_loss_coef >= 0, "model.moe.z_loss_coef", "must be >= 0");
    RULE(e.router.bias_update_rate >= 0, "model.moe.router.bias_update_rate", "must be >= 0");
    RULE(std::isfinite(e.capacity_factor), "model.moe.capacity_factor", "must be a finite number");
  }

  // ---- parallel layout ----
  auto& p = parallel;
  RULE(p.tp >= 1, "parallel.tp", "must be >= 1, got " << p.tp);
  RULE(p.ep >= 1, "parallel.ep", "must be >= 1, got " << p.ep);
  RULE(world_size % p.tp == 0, "parallel.tp", "(" << p.tp << ") must divide the world size (" << world_size << " ranks)");
  RULE(world_size % p.ep == 0, "parallel.ep", "(" << p.ep << ") must divide the world size (" << world_size << " ranks)");
  RULE(p.expert_sharding == "ep" || p.expert_sharding == "fssdp", "parallel.expert_sharding",
       "must be ep or fssdp, got '" << p.expert_sharding << "'");
  RULE(p.zero == 0 || p.zero == 1, "parallel.zero", "must be 0 or 1, got " << p.zero);
  if (e.num_experts > 0)
    RULE(e.num_experts % p.ep == 0, "model.moe.num_experts",
         "(" << e.num_experts << ") must be divisible by parallel.ep (" << p.ep << ")");

  // ---- train ----
  RULE(t.seq_len > 0 && t.seq_len <= m.max_seq_len, "train.seq_len",
       "must be in [1, model.max_seq_len=" << m.max_seq_len << "], got " << t.seq_len);
  RULE(t.micro_batch >= 1, "train.micro_batch", "must be >= 1, got " << t.micro_batch);
  int d = dp(world_size);
  if (t.global_batch == 0) t.global_batch = t.micro_batch * d;
  RULE(t.global_batch > 0 && t.global_batch % (t.micro_batch * d) == 0, "train.global_batch",
       "(" << t.global_batch << ") must be a multiple of train.micro_batch x dp (" << t.micro_batch << " x " << d << ")");
  RULE(t.steps >= 1, "train.steps", "is required and must be >= 1, got " << t.steps);
  RULE(t.precision == "fp32" || t.precision == "bf16", "train.precision", "must be fp32 or bf16, got '" << t.precision << "'");
  RULE(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 turns clipping off)");
  RULE(t.log_every >= 1, "train.log_every", "must be >= 1, got " << t.log_every);
  RULE(t.eval_every >= 0, "train.eval_every", "must be >= 0 (0: never)");
  RULE(t.eval_batches >= 1, "train.eval_batches", "must be >= 1");

  // ---- optim ----
  RULE(o.lr > 0, "optim.lr", "must be > 0, got " << o.lr);
  RULE(o.min_lr >= 0 && o.min_lr <= o.lr, "optim.min_lr", "must be in [0, optim.lr], got " << o.min_lr);
  RULE(o.warmup_steps >= 0 && o.warmup_steps <= t.steps, "optim.warmup_steps",
       "must be in [0, train.steps=" << t.steps << "], got " << o.warmup_steps);
  RULE(o.schedule == "cosine" || o.schedule == "linear" || o.schedule == "constant", "optim.schedule",
       "must be cosine, linear or constant, got '" << o.schedule << "'");
  RULE(o.beta1 >= 0 && o.beta1 < 1, "optim.beta1", "must be in [0, 1)");
  RULE(o.beta2 >= 0 && o.beta2 < 1, "optim.beta2", "must be in [0, 1)");
  RULE(o.eps > 0, "optim.eps", "must be > 0");
  RULE(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0");

  // ---- data ----
  RULE(data.token_dtype == "uint16" || data.token_dtype == "uint32", "data.token_dtype",
       "must be uint16 or uint32, got '" << data.token_dtype << "'");
  RULE(data.token_dtype == "uint32" || m.vocab_size <= 65536, "model.vocab_size",
       "(" << m.vocab_size << ") does not fit data.token_dtype uint16 (at most 65536)");
  if (need_data) RULE(!data.train.empty(), "data.train", "is required (a token file made by moe-data)");
  RULE(t.eval_every == 0 || !data.valid.empty() || !need_data, "data.valid",
       "is required when train.eval_every > 0");

  // ---- checkpoint / profile ----
  RULE(checkpoint.every >= 0, "checkpoint.every", "must be >= 0 (0: never)");
  RULE(checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1");
  RULE(!checkpoint.resume.empty(), "checkpoint.resume", "must be auto, never or a checkpoint path");
  RULE(profile.breakdown_every >= 0, "profile.breakdown_every", "must be >= 0");
  RULE(profile.enabled || (profile.breakdown_every == 0 && !profile.trace), "profile.enabled",
       "is false, so profile.breakdown_every must be 0 and profile.trace false");
  RULE(profile.trace_steps.size() == 2 && profile.trace_steps[0] <= profile.trace_steps[1],
       "profile.trace_steps", "must be [first, last] with first <= last");
}

#undef RULE

}  // namespace moe
