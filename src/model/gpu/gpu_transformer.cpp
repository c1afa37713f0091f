// GpuTransformer: the CPU model's forward and backward (src/model/*.cpp), call for call, on the
// CUDA twins of the kernels. Comments name the CPU function each part mirrors. Parameter accessors
// and the matmul helpers: gpu_matmuls.cpp; the MoE layer: gpu_moe_layer.cpp, its expert stage (and
// its ep dispatch): gpu_experts.cpp, its balancing losses and per-step statistics: gpu_moe_stats.cpp;
// ZeRO-1: gpu_zero1.cpp. Tensor parallelism: the local sizes below and tp_all_reduce after each
// split layer, as the CPU layers do.
#include "model/gpu/gpu_transformer.h"
#include "model/gpu/gpu_block.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/profiler.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/moe_order.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/router.h"
#include "kernels/swiglu.h"

namespace moe::gpu {

using cuda::DeviceArray;

// The weights whose matmuls run in bf16 in bf16 mode: the LM head's (the embedding table when tied)
// too; the router and the embedding lookup stay fp32.
static bool bf16_matmul_weight(const std::string& name, bool tied) {
  if (name == (tied ? "embed/weight" : "lm_head/weight")) return true;
  for (const char* tail : {"/attn/wq", "/attn/wk", "/attn/wv", "/attn/wo", "/ffn/w1", "/ffn/w3", "/ffn/w2",
                           "/experts/w1", "/experts/w3", "/experts/w2", "/shared/w1", "/shared/w3", "/shared/w2"}) {
    const std::string t(tail);
    if (name.size() > t.size() && name.compare(name.size() - t.size(), t.size(), t) == 0) return true;
  }
  return false;
}

GpuTransformer::GpuTransformer(const ModelConfig& cfg, ParamStore& host, bool bf16, TensorParallel tp)
    : cfg_(cfg), bf16_(bf16), E_(cfg.moe.num_experts), tp_(tp) {
  MOE_CHECK(cuda::available(), "GPU model: no CUDA device can be used");
  MOE_CHECK(!tp.host == !tp.device && (!tp.host || tp.host->size() == tp.device->size()),
            "GPU model: tensor parallelism needs a host and a device communicator over the same ranks");
  P_ = tp.host ? tp.host->size() : 1;
  V_local_ = cfg.vocab_size / P_;
  for (Param* p : host.params()) {
    const bool tp_split = p->split == Split::Tp && P_ > 1;
    const int64_t parts = p->full_shape[size_t(p->shard_dim)] / std::max<int64_t>(1, p->value.dim(p->shard_dim));
    MOE_CHECK(!p->sharded() || p->expert() || (tp_split && parts == P_),
              "GPU model: parameter " << p->name << " is split over " << parts
                                      << " tensor-parallel ranks, and the GPU model's tp group has " << P_);
    if (p->name == "embed/weight") vocab_lo_ = p->shard_offset;
    const size_t n = size_t(p->value.numel());
    DevParam d{DeviceArray<float>(n),
               DeviceArray<float>(n),
               DeviceArray<float>(n),
               DeviceArray<float>(n),
               DeviceArray<uint16_t>(),
               p->decay(),
               p->expert(),
               tp_split,
               p->token_sliced};
    d.m.zero();
    d.v.zero();
    cuda::copy_to_device(d.value.data(), p->value.data(), sizeof(float) * p->value.numel());
    if (bf16_ && bf16_matmul_weight(p->name, cfg.tie_embeddings)) {
      d.bf16 = DeviceArray<uint16_t>(size_t(p->value.numel()));
      cuda::to_bf16(d.value.data(), d.bf16.data(), p->value.numel());
    }
    params_.emplace(p->name, std::move(d));
  }
  for (auto& [name, d] : params_) {  // name order: the same collectives in the same order on every rank
    int layer = -1;
    if (name.rfind("layers/", 0) == 0) layer = std::stoi(name.substr(7));
    sync_groups_[layer].push_back(&d);
  }
  for (Buffer* b : host.buffers()) {
    DeviceArray<float> d(size_t(b->value.numel()));
    cuda::copy_to_device(d.data(), b->value.data(), sizeof(float) * b->value.numel());
    buffers_.emplace(b->name, std::move(d));
  }
  zero_grad();
  for (int l = 0; l < cfg.n_layers; ++l) {
    auto b = std::make_unique<Block>();
    b->prefix = "layers/" + std::to_string(l);
    b->moe = cfg.is_moe_layer(l);
    blocks_.push_back(std::move(b));
  }
}

GpuTransformer::~GpuTransformer() = default;

void GpuTransformer::zero_grad() {
  for (auto& [name, p] : params_) p.grad.zero();
}

double GpuTransformer::optimizer_step(const OptimConfig& o, double lr, double grad_clip) {
  GpuPhase phase("optimizer", phase_timing_);
  if (zero_) return zero_step(o, lr, grad_clip);
  // Every parameter once: replicated gradients are the same on every rank after the sums; tp-split
  // ones are summed over tp, expert ones over ep (StepRunner::global_norm).
  std::vector<const float*> grads[3];  // replicated, tp-split, expert
  std::vector<int64_t> sizes[3];
  std::vector<cuda::AdamWTensor> tensors;
  for (auto& [name, p] : params_) {
    const int k = p.expert ? 2 : (p.tp_split ? 1 : 0);
    grads[k].push_back(p.grad.data());
    sizes[k].push_back(int64_t(p.grad.size()));
    tensors.push_back({p.value.data(), p.grad.data(), p.m.data(), p.v.data(),
                       p.bf16.size() > 0 ? static_cast<void*>(p.bf16.data()) : nullptr, int64_t(p.value.size()),
                       p.decay ? float(o.weight_decay) : 0.0f});
  }
  double sumsq[3] = {0.0, 0.0, 0.0};
  for (int k = 0; k < 3; ++k)
    if (!grads[k].empty()) sumsq[k] = cuda::sum_squares_many(grads[k].data(), sizes[k].data(), int(grads[k].size()));
  if (P_ > 1) tp_.host->all_reduce_sum(&sumsq[1], 1);                            // each rank's slices once
  if (ep_host_ && ep_host_->size() > 1) ep_host_->all_reduce_sum(&sumsq[2], 1);  // each rank's experts once
  return clip_and_update(o, lr, grad_clip, std::sqrt(sumsq[0] + sumsq[1] + sumsq[2]), tensors);
}

double GpuTransformer::clip_and_update(const OptimConfig& o, double lr, double grad_clip, double norm,
                                       std::vector<cuda::AdamWTensor>& tensors) {
  const double coef = (grad_clip <= 0 || !(norm > grad_clip)) ? 1.0 : grad_clip / norm;  // clip_coefficient
  ++optimizer_steps_;
  const float bc1 = float(1.0 - std::pow(o.beta1, double(optimizer_steps_)));
  const float bc2 = float(1.0 - std::pow(o.beta2, double(optimizer_steps_)));
  cuda::adamw_update_many(tensors.data(), int(tensors.size()), float(lr), float(o.beta1), float(o.beta2),
                          float(o.eps), bc1, bc2, float(coef));
  return norm;
}

void GpuTransformer::all_reduce_grads(Communicator& comm) {
  GpuPhase phase("grad_allreduce", phase_timing_);
  for (auto& [name, p] : params_) comm.all_reduce_sum(p.grad.data(), int64_t(p.grad.size()));
}

void GpuTransformer::start_grad_sync(int layer) {
  for (DevParam* p : sync_groups_[layer]) {
    Communicator* comm = p->expert                               ? sync_expert_comm_
                         : (p->token_sliced && sync_token_comm_) ? sync_token_comm_
                                                                 : sync_comm_;
    if (comm && comm->size() > 1)
      pending_sync_.push_back(comm->all_reduce_sum_async(p->grad.data(), int64_t(p->grad.size())));
  }
}

void GpuTransformer::set_expert_parallel(Communicator* ep_host, Communicator* ep_device, int chunks) {
  MOE_CHECK(ep_host && ep_device && ep_host->size() == ep_device->size(),
            "GPU model: expert parallelism needs a host and a device communicator over the same ranks");
  MOE_CHECK(chunks >= 0, "GPU model: expert parallelism takes a chunk count >= 1, or 0 to choose it");
  ep_host_ = ep_host;
  ep_device_ = ep_device;
  ep_chunks_ = std::min(chunks, kMaxEpChunks);
  if (ep_host->size() > 1 && ep_chunks_ > 0) make_dispatchers();
}

void GpuTransformer::make_dispatchers() {
  for (auto& b : blocks_)
    if (b->moe)
      for (int c = 0; c < ep_chunks_; ++c)
        b->dispatchers.push_back(std::make_unique<TokenDispatcher>(ep_host_, E_, cfg_.d_model, ep_device_));
}

void GpuTransformer::finish_grad_sync() {
  if (pending_sync_.empty()) return;
  GpuPhase phase("grad_allreduce", phase_timing_);
  for (auto& op : pending_sync_) op->wait();
  pending_sync_.clear();
}

void GpuTransformer::download_moments(const std::string& name, Tensor& m, Tensor& v) {
  if (zero_ && zero_->slot_of.count(name)) return zero_download_moments(zero_->slot_of.at(name), m, v);
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end(), "GPU model: no parameter " << name);
  MOE_CHECK(size_t(m.numel()) == it->second.m.size() && size_t(v.numel()) == it->second.v.size(),
            "GPU model: moments of " << name << " have " << it->second.m.size() << " elements");
  cuda::copy_to_host(m.data(), it->second.m.data(), sizeof(float) * it->second.m.size());
  cuda::copy_to_host(v.data(), it->second.v.data(), sizeof(float) * it->second.v.size());
}

void GpuTransformer::upload_moments(const std::string& name, const Tensor& m, const Tensor& v) {
  if (zero_ && zero_->slot_of.count(name)) return zero_upload_moments(zero_->slot_of.at(name), m, v);
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end(), "GPU model: no parameter " << name);
  MOE_CHECK(size_t(m.numel()) == it->second.m.size() && size_t(v.numel()) == it->second.v.size(),
            "GPU model: moments of " << name << " have " << it->second.m.size() << " elements");
  cuda::copy_to_device(it->second.m.data(), m.data(), sizeof(float) * it->second.m.size());
  cuda::copy_to_device(it->second.v.data(), v.data(), sizeof(float) * it->second.v.size());
}

void GpuTransformer::download_values(ParamStore& host) const {
  for (Param* p : host.params()) {
    auto it = params_.find(p->name);
    MOE_CHECK(it != params_.end(), "GPU model: no parameter " << p->name);
    cuda::copy_to_host(p->value.data(), it->second.value.data(), sizeof(float) * p->value.numel());
  }
  for (Buffer* b : host.buffers()) {
    auto it = buffers_.find(b->name);
    MOE_CHECK(it != buffers_.end(), "GPU model: no buffer " << b->name);
    cuda::copy_to_host(b->value.data(), it->second.data(), sizeof(float) * b->value.numel());
  }
}

void GpuTransformer::download_grads(ParamStore& host) const {
  for (Param* p : host.params()) {
    auto it = params_.find(p->name);
    MOE_CHECK(it != params_.end(), "GPU model: no parameter " << p->name);
    cuda::copy_to_host(p->grad.data(), it->second.grad.data(), sizeof(float) * p->grad.numel());
  }
}

int64_t GpuTransformer::lm_head_chunk(int64_t T, int64_t Vl) {
  if (T == lm_chunk_tokens_) return lm_chunk_;
  const size_t whole = size_t(T) * size_t(Vl) * (bf16_ ? 6 : 4);  // fp32 logits (+ bf16 gradients)
  const bool fits = int64_t(lm_scratch_.size()) >= T * Vl || whole <= cuda::free_device_memory() / 4;
  lm_chunk_ = fits ? Vl : std::min<int64_t>(Vl, 8192);
  lm_chunk_tokens_ = T;
  return lm_chunk_;
}

MicroBatchLoss GpuTransformer::forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S,
                                                float grad_scale, bool backward) {
  // Under tp this rank's heads, FFN columns and vocabulary rows: the local sizes.
  const int64_t T = B * S, D = cfg_.d_model, L = cfg_.n_layers, V = cfg_.vocab_size, Vl = V_local_;
  const int64_t H = cfg_.n_heads / P_, Hkv = cfg_.n_kv_heads / P_, hd = cfg_.head_dim(), dq = H * hd, dkv = Hkv * hd;
  const int64_t F = cfg_.ffn_hidden / P_;
  const float eps = float(cfg_.norm_eps);
  const auto& mc = cfg_.moe;
  const int64_t E = mc.num_experts, K = mc.top_k, Fe = mc.expert_hidden;
  MOE_CHECK(T % P_ == 0, "GPU model: micro_batch x seq_len (" << T << ") must be divisible by tp (" << P_ << ")");
  for (int64_t t = 0; t < T; ++t)
    MOE_CHECK(tokens[t] >= 0 && tokens[t] < V && targets[t] >= 0 && targets[t] < V,
              "token id out of range [0, " << V << ") at position " << t);
  if (E > 0 && !grouped_chosen_) {  // the faster way to run the experts' GEMMs at these shapes
    grouped_ = cuda::choose_grouped_impl(E, T * K, Fe, D, bf16_);
    grouped_chosen_ = true;
  }
  if (bf16_ && !attention_chosen_) {  // the faster attention kernels at these shapes
    attention_ = cuda::choose_attention_kernel(B, S, H, Hkv, hd);
    attention_chosen_ = true;
  }
  // ids in this rank's vocabulary rows (all of them without tp); -1: another shard's (a zero
  // embedding row, no gradient; not this shard's target)
  auto local_ids = [&](const int32_t* ids) {
    std::vector<int32_t> out(ids, ids + T);
    for (int32_t& id : out) id = id >= vocab_lo_ && id < vocab_lo_ + Vl ? int32_t(id - vocab_lo_) : -1;
    return out;
  };
  tokens_ = DeviceArray<int32_t>(local_ids(tokens));
  targets_ = DeviceArray<int32_t>(local_ids(targets));
  acts_.resize(L + 1);
  for (auto& a : acts_) ensure(a, T * D);
  MicroBatchLoss loss;

  // ---- forward (Transformer::forward_backward, TransformerBlock::forward) ----
  {
    GpuPhase phase("embedding_fwd", phase_timing_);
    cuda::embedding_forward(tokens_.data(), w("embed/weight"), acts_[0].data(), T, D);
  }
  tp_all_reduce(acts_[0].data(), T * D);  // vocabulary shards
  for (int64_t l = 0; l < L; ++l) {
    Block& b = *blocks_[l];
    const std::string& p = b.prefix;
    b.x = acts_[l].data();
    b.B = B, b.S = S, b.T = T;
    for (auto* a : {&b.a1, &b.mid, &b.a2, &b.tmp, &b.dtmp}) ensure(*a, T * D);
    ensure(b.rstd1, T);
    ensure(b.rstd2, T);
    ensure(b.q, T * dq);
    ensure(b.k, T * dkv);
    ensure(b.v, T * dkv);
    ensure(b.o, T * dq);
    ensure(b.lse, B * H * S);
    // attention (AttentionLayer::forward)
    {
      GpuPhase phase("norm_fwd", phase_timing_);
      cuda::rms_norm_forward(b.x, w(p + "/attn_norm/weight"), b.a1.data(), b.rstd1.data(), T, D, eps);
    }
    {
      GpuPhase phase("attention_fwd", phase_timing_);
      const Operand a1 = operand(b.a1.data(), T * D, bf16_a_);  // rounded once for the three projections
      linear_fwd(a1, T, D, p + "/attn/wq", dq, b.q.data());
      linear_fwd(a1, T, D, p + "/attn/wk", dkv, b.k.data());
      linear_fwd(a1, T, D, p + "/attn/wv", dkv, b.v.data());
      cuda::rope_forward(b.q.data(), B, S, H, hd, cfg_.rope_theta);
      cuda::rope_forward(b.k.data(), B, S, Hkv, hd, cfg_.rope_theta);
      {
        GpuPhase core("attention_core_fwd", phase_timing_);  // apart from the projections around it
        cuda::attention_forward(b.q.data(), b.k.data(), b.v.data(), b.o.data(), b.lse.data(), B, S, H, Hkv, hd,
                                bf16_, attention_.forward);
      }
      linear_fwd(b.o.data(), T, dq, p + "/attn/wo", D, b.tmp.data());
    }
    tp_all_reduce(b.tmp.data(), T * D);  // the heads' contributions
    {
      GpuPhase phase("residual_fwd", phase_timing_);
      cuda::add(b.x, b.tmp.data(), b.mid.data(), T * D);
    }
    {
      GpuPhase phase("norm_fwd", phase_timing_);
      cuda::rms_norm_forward(b.mid.data(), w(p + "/ffn_norm/weight"), b.a2.data(), b.rstd2.data(), T, D, eps);
    }
    if (!b.moe) {
      {
        GpuPhase phase("dense_ffn_fwd", phase_timing_);
        b.dense.resize(T, F);
        swiglu_forward(p + "/ffn", b.a2.data(), T, D, F, b.dense.g.data(), b.dense.u.data(), b.dense.h.data(),
                       b.tmp.data());
      }
      tp_all_reduce(b.tmp.data(), T * D);  // the FFN columns' contributions
    } else {
      moe_forward(b, backward, grad_scale, loss);
    }
    GpuPhase phase("residual_fwd", phase_timing_);
    cuda::add(b.mid.data(), b.tmp.data(), acts_[l + 1].data(), T * D);
  }
  // final norm, LM head and cross-entropy, fused and chunked over the vocabulary
  ensure(hf_, T * D);
  ensure(rstd_f_, T);
  ensure(dh_, T * D);
  ensure(dtmp_, T * D);
  ensure(loss_, T);
  const int64_t chunk = lm_head_chunk(T, Vl);
  ensure(lm_scratch_, T * chunk);
  {
    GpuPhase phase("norm_fwd", phase_timing_);
    cuda::rms_norm_forward(acts_[L].data(), w("final_norm/weight"), hf_.data(), rstd_f_.data(), T, D, eps);
  }
  {
    GpuPhase phase("lm_head_loss", phase_timing_);
    const std::string lm = cfg_.tie_embeddings ? "embed/weight" : "lm_head/weight";
    const float scale = grad_scale / float(T);
    cuda::LmHeadStatsReduce reduce;  // under tp: the softmax statistics of the whole vocabulary
    if (P_ > 1)
      reduce = [&](float* row_max, float* sum_exp, float* target_logit) {
        GpuPhase comm("tp_allreduce", phase_timing_);
        ensure(lm_local_max_, T);
        cuda::copy_on_device(lm_local_max_.data(), row_max, sizeof(float) * T);
        tp_.device->all_reduce_max(row_max, T);
        cuda::cross_entropy_rescale_sum_exp(lm_local_max_.data(), row_max, T, sum_exp);
        tp_.device->all_reduce_sum(sum_exp, T);
        tp_.device->all_reduce_sum(target_logit, T);
      };
    if (bf16_) {
      ensure(lm_scratch_bf16_, T * chunk);
      cuda::lm_head_cross_entropy_bf16(rounded(hf_.data(), T * D, bf16_a_), wb(lm), targets_.data(), T, D, Vl, chunk,
                                       scale, loss_.data(), dh_.data(), g(lm), lm_scratch_.data(),
                                       lm_scratch_bf16_.data(), reduce);
    } else {
      cuda::lm_head_cross_entropy(hf_.data(), w(lm), targets_.data(), T, D, Vl, chunk, scale, loss_.data(), dh_.data(),
                                  g(lm), lm_scratch_.data(), reduce);
    }
    double ce_sum = 0;
    for (float x : loss_.download()) ce_sum += x;
    loss.ce = ce_sum / double(T);
  }
  if (!backward) return loss;  // the loss download above waited for the device

  // ---- backward (TransformerBlock::backward in reverse) ----
  tp_all_reduce(dh_.data(), T * D);  // each vocabulary shard's part
  {
    GpuPhase phase("norm_bwd", phase_timing_);
    cuda::rms_norm_backward(acts_[L].data(), w("final_norm/weight"), rstd_f_.data(), dh_.data(), dtmp_.data(),
                            g("final_norm/weight"), T, D);
  }
  float* dout = dtmp_.data();  // the residual-stream gradient, updated in place block by block
  for (int64_t l = L - 1; l >= 0; --l) {
    Block& b = *blocks_[l];
    const std::string& p = b.prefix;
    // FFN branch -> gradient of a2 in b.tmp
    if (!b.moe) {
      {
        GpuPhase phase("dense_ffn_bwd", phase_timing_);
        swiglu_backward(p + "/ffn", b.a2.data(), T, D, F, b.dense.g.data(), b.dense.u.data(), b.dense.h.data(), dout,
                        b.tmp.data(), false);
      }
      tp_all_reduce(b.tmp.data(), T * D);
    } else {
      moe_backward(b, dout);
    }
    {
      GpuPhase phase("norm_bwd", phase_timing_);
      cuda::rms_norm_backward(b.mid.data(), w(p + "/ffn_norm/weight"), b.rstd2.data(), b.tmp.data(), b.dtmp.data(),
                              g(p + "/ffn_norm/weight"), T, D);
    }
    {
      GpuPhase phase("residual_bwd", phase_timing_);
      cuda::add_inplace(dout, b.dtmp.data(), T * D);  // dout now holds dmid
    }
    {  // attention branch (AttentionLayer::backward)
      GpuPhase phase("attention_bwd", phase_timing_);
      ensure(b.dout_heads, T * dq);
      ensure(b.dq, T * dq);
      ensure(b.dk, T * dkv);
      ensure(b.dv, T * dkv);
      const Operand dout_op = operand(dout, T * D, bf16_a_);  // each operand rounded once
      linear_dx(dout_op, T, D, p + "/attn/wo", dq, 0.0f, b.dout_heads.data());
      linear_dw(dout_op, T, D, operand(b.o.data(), T * dq, bf16_b_), dq, p + "/attn/wo");
      {
        GpuPhase core("attention_core_bwd", phase_timing_);
        cuda::attention_backward(b.q.data(), b.k.data(), b.v.data(), b.o.data(), b.lse.data(), b.dout_heads.data(),
                                 b.dq.data(), b.dk.data(), b.dv.data(), B, S, H, Hkv, hd, bf16_,
                                 attention_.backward);
      }
      cuda::rope_backward(b.dq.data(), B, S, H, hd, cfg_.rope_theta);
      cuda::rope_backward(b.dk.data(), B, S, Hkv, hd, cfg_.rope_theta);
      const Operand a1 = operand(b.a1.data(), T * D, bf16_b_);
      const struct {
        const float* d;
        int64_t n;
        const char* w;
      } projections[] = {{b.dq.data(), dq, "/attn/wq"}, {b.dk.data(), dkv, "/attn/wk"}, {b.dv.data(), dkv, "/attn/wv"}};
      for (int i = 0; i < 3; ++i) {  // d(a1) = dq Wq + dk Wk + dv Wv, in that order
        const auto& pr = projections[i];
        const Operand d = operand(pr.d, T * pr.n, bf16_a_);
        linear_dw(d, T, pr.n, a1, D, p + pr.w);
        linear_dx(d, T, pr.n, p + pr.w, D, i == 0 ? 0.0f : 1.0f, b.tmp.data());
      }
    }
    tp_all_reduce(b.tmp.data(), T * D);
    {
      GpuPhase phase("norm_bwd", phase_timing_);
      cuda::rms_norm_backward(b.x, w(p + "/attn_norm/weight"), b.rstd1.data(), b.tmp.data(), b.dtmp.data(),
                              g(p + "/attn_norm/weight"), T, D);
    }
    {
      GpuPhase phase("residual_bwd", phase_timing_);
      cuda::add_inplace(dout, b.dtmp.data(), T * D);  // dx = dmid + attn_norm'(attn'(dmid))
    }
    if (sync_comm_ || sync_expert_comm_ || sync_token_comm_)
      start_grad_sync(int(l));  // this layer's gradients are complete
  }
  {
    GpuPhase phase("embedding_bwd", phase_timing_);
    cuda::embedding_backward(tokens_.data(), dout, g("embed/weight"), T, D);
  }
  if (sync_comm_ || sync_expert_comm_ || sync_token_comm_) start_grad_sync(-1);
  cuda::synchronize();
  return loss;
}

}  // namespace moe::gpu
