// Transformer forward/backward over one micro-batch.
#include "model/transformer.h"

#include <cmath>

#include "core/error.h"
#include "core/profiler.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"

namespace moe {

static std::string layer_prefix(int l) { return "layers/" + std::to_string(l); }

TransformerBlock::TransformerBlock(ParamStore& store, int layer, const ModelConfig& cfg, MoeGroups groups)
    : D_(cfg.d_model),
      attn_norm_(store, layer_prefix(layer) + "/attn_norm", cfg.d_model, float(cfg.norm_eps)),
      ffn_norm_(store, layer_prefix(layer) + "/ffn_norm", cfg.d_model, float(cfg.norm_eps)),
      attn_(store, layer_prefix(layer) + "/attn", cfg, cfg.n_layers, groups.tp) {
  if (cfg.is_moe_layer(layer)) {
    moe_ = std::make_unique<MoeLayer>(store, layer_prefix(layer) + "/moe", cfg, cfg.n_layers, groups);
  } else {
    dense_ = std::make_unique<SwiGluLayer>(store, layer_prefix(layer) + "/ffn", cfg.d_model, cfg.ffn_hidden,
                                           cfg.init_std, cfg.init_std / std::sqrt(2.0 * cfg.n_layers),
                                           "dense_ffn_fwd", "dense_ffn_bwd", groups.tp);
  }
}

MoeAux TransformerBlock::forward(const float* x, float* out, int64_t B, int64_t S, bool training, float grad_scale) {
  const int64_t T = B * S, n = T * D_;
  T_ = T;
  for (Tensor* t : {&a1_, &mid_, &a2_, &tmp_}) t->resize({T, D_});
  attn_norm_.forward(x, a1_.data(), T);
  attn_.forward(a1_.data(), tmp_.data(), B, S);
  {
    ScopedPhase phase("residual_fwd");
    add(x, tmp_.data(), mid_.data(), n);
  }
  ffn_norm_.forward(mid_.data(), a2_.data(), T);
  MoeAux aux;
  if (moe_) {
    aux = moe_->forward(a2_.data(), tmp_.data(), B, S, training, grad_scale);
  } else {
    dense_->forward(a2_.data(), tmp_.data(), T);
  }
  ScopedPhase phase("residual_fwd");
  add(mid_.data(), tmp_.data(), out, n);
  return aux;
}

void TransformerBlock::backward(float* dout, float* dx) {
  const int64_t n = T_ * D_;
  dtmp_.resize({T_, D_});
  // FFN branch: dmid = dout + ffn_norm'(ffn'(dout))
  if (moe_) {
    moe_->backward(dout, tmp_.data());
  } else {
    dense_->backward(dout, tmp_.data(), false);
  }
  ffn_norm_.backward(tmp_.data(), dtmp_.data());
  {
    ScopedPhase phase("residual_bwd");
    add_inplace(dout, dtmp_.data(), n);  // dout now holds dmid
  }
  // Attention branch: dx = dmid + attn_norm'(attn'(dmid))
  attn_.backward(dout, tmp_.data());
  attn_norm_.backward(tmp_.data(), dtmp_.data());
  ScopedPhase phase("residual_bwd");
  add(dout, dtmp_.data(), dx, n);
}

Transformer::Transformer(const ModelConfig& cfg, MoeGroups groups) : cfg_(cfg), tp_(groups.tp) {
  const int tp = groups.tp->size(), tp_rank = groups.tp->rank();
  embed_ = &store_.add_split("embed/weight", {cfg.vocab_size, cfg.d_model}, Split::Tp, 0, tp, tp_rank, Init::Normal,
                             cfg.init_std);
  for (int l = 0; l < cfg.n_layers; ++l) blocks_.push_back(std::make_unique<TransformerBlock>(store_, l, cfg, groups));
  final_norm_ = std::make_unique<RmsNormLayer>(store_, "final_norm", cfg.d_model, float(cfg.norm_eps));
  lm_weight_ = cfg.tie_embeddings ? embed_
                                  : &store_.add_split("lm_head/weight", {cfg.vocab_size, cfg.d_model}, Split::Tp, 0, tp,
                                                      tp_rank, Init::Normal, cfg.init_std);
  lm_head_ = std::make_unique<LmHead>(*lm_weight_, cfg.d_model, groups.tp);
}

MicroBatchLoss Transformer::forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S,
                                             bool training, float grad_scale) {
  const int64_t T = B * S, D = cfg_.d_model, L = cfg_.n_layers;
  for (int64_t t = 0; t < T; ++t) {
    MOE_CHECK(tokens[t] >= 0 && tokens[t] < cfg_.vocab_size && targets[t] >= 0 && targets[t] < cfg_.vocab_size,
              "token id out of range [0, " << cfg_.vocab_size << ") at position " << t);
  }
  acts_.resize(L + 1);
  for (auto& a : acts_) a.resize({T, D});
  hf_.resize({T, D});
  MicroBatchLoss loss;
  {
    ScopedPhase phase("embedding_fwd");
    const int64_t lo = embed_->shard_offset, rows = embed_->value.dim(0);
    local_ids_.resize(T);
    for (int64_t t = 0; t < T; ++t) local_ids_[t] = (tokens[t] >= lo && tokens[t] < lo + rows) ? int32_t(tokens[t] - lo) : -1;
    embedding_forward(local_ids_.data(), embed_->value.data(), acts_[0].data(), T, D);
    if (tp_->size() > 1) {
      ScopedPhase comm("tp_allreduce");
      tp_->all_reduce_sum(acts_[0].data(), T * D);  // vocabulary shards
    }
  }
  for (int64_t l = 0; l < L; ++l) {
    MoeAux aux = blocks_[l]->forward(acts_[l].data(), acts_[l + 1].data(), B, S, training, grad_scale);
    loss.aux += aux.lbl + aux.z;
  }
  final_norm_->forward(acts_[L].data(), hf_.data(), T);
  if (training) dh_.resize({T, D});
  double ce_sum = lm_head_->forward_backward(hf_.data(), targets, T, training ? dh_.data() : nullptr,
                                             grad_scale / float(T));
  loss.ce = ce_sum / double(T);
  if (!training) return loss;

  dtmp_.resize({T, D});
  final_norm_->backward(dh_.data(), dtmp_.data());
  for (int64_t l = L - 1; l >= 0; --l) {
    blocks_[l]->backward(dtmp_.data(), dtmp_.data());
    if (layer_backward_hook_) layer_backward_hook_(int(l));
  }
  ScopedPhase phase("embedding_bwd");
  embedding_backward(local_ids_.data(), dtmp_.data(), embed_->grad.data(), T, D);
  return loss;
}

void Transformer::end_step() {
  for (auto& b : blocks_)
    if (b->moe()) b->moe()->end_step();
}

std::vector<std::pair<int, std::vector<int64_t>>> Transformer::expert_loads() const {
  std::vector<std::pair<int, std::vector<int64_t>>> out;
  for (size_t l = 0; l < blocks_.size(); ++l)
    if (blocks_[l]->moe()) out.emplace_back(int(l), blocks_[l]->moe()->step_load());
  return out;
}

double Transformer::active_matmul_params() const {
  const auto& m = cfg_;
  const double D = m.d_model, hd = m.head_dim();
  double attn = D * hd * (2.0 * m.n_heads + 2.0 * m.n_kv_heads);
  double total = 0;
  for (int l = 0; l < m.n_layers; ++l) {
    total += attn;
    if (m.is_moe_layer(l)) {
      total += D * m.moe.num_experts;  // router
      total += 3.0 * D * m.moe.expert_hidden * m.moe.top_k;
      total += 3.0 * D * m.moe.shared_expert_hidden * m.moe.num_shared_experts;
    } else {
      total += 3.0 * D * m.ffn_hidden;
    }
  }
  total += D * m.vocab_size;  // LM head (the embedding lookup is not a matmul)
  return total;
}

}  // namespace moe
