// GpuTransformer: the CPU model's forward and backward (src/model/*.cpp), call for call, on the
// CUDA twins of the kernels. Comments name the CPU function each part mirrors.
#include "model/gpu/gpu_transformer.h"

#include <cmath>
#include <vector>

#include "core/error.h"
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

namespace {

template <class T>
void ensure(DeviceArray<T>& a, int64_t n) {
  if (int64_t(a.size()) != n) a = DeviceArray<T>(size_t(n));
}

// Device SwiGLU activations of one FFN (dense, shared experts, or the grouped experts' rows).
struct FfnActs {
  DeviceArray<float> g, u, h;
  void resize(int64_t rows, int64_t F) {
    ensure(g, rows * F);
    ensure(u, rows * F);
    ensure(h, rows * F);
  }
};

// SwiGluLayer::forward: y = (silu(x W1^T) * (x W3^T)) W2^T, x: [T, D], W1, W3: [F, D], W2: [D, F].
void swiglu_ffn_forward(const float* x, const float* w1, const float* w3, const float* w2, int64_t T, int64_t D,
                        int64_t F, FfnActs& a, float* y) {
  a.resize(T, F);
  cuda::gemm(false, true, T, F, D, 1.0f, x, D, w1, D, 0.0f, a.g.data(), F);
  cuda::gemm(false, true, T, F, D, 1.0f, x, D, w3, D, 0.0f, a.u.data(), F);
  cuda::swiglu_forward(a.g.data(), a.u.data(), a.h.data(), T * F);
  cuda::gemm(false, true, T, D, F, 1.0f, a.h.data(), F, w2, F, 0.0f, y, D);
}

// SwiGluLayer::backward: weight gradients accumulate; dx assigned, or accumulated when asked.
void swiglu_ffn_backward(const float* x, const float* w1, const float* w3, const float* w2, float* dw1, float* dw3,
                         float* dw2, int64_t T, int64_t D, int64_t F, FfnActs& a, const float* dy, float* dx,
                         bool accumulate) {
  cuda::gemm(true, false, D, F, T, 1.0f, dy, D, a.h.data(), F, 1.0f, dw2, F);
  cuda::gemm(false, false, T, F, D, 1.0f, dy, D, w2, F, 0.0f, a.h.data(), F);
  cuda::swiglu_backward(a.g.data(), a.u.data(), a.h.data(), a.g.data(), a.u.data(), T * F);
  cuda::gemm(true, false, F, D, T, 1.0f, a.g.data(), F, x, D, 1.0f, dw1, D);
  cuda::gemm(true, false, F, D, T, 1.0f, a.u.data(), F, x, D, 1.0f, dw3, D);
  cuda::gemm(false, false, T, D, F, 1.0f, a.g.data(), F, w1, D, accumulate ? 1.0f : 0.0f, dx, D);
  cuda::gemm(false, false, T, D, F, 1.0f, a.u.data(), F, w3, D, 1.0f, dx, D);
}

}  // namespace

struct GpuTransformer::Block {
  std::string prefix;
  bool moe = false;
  const float* x = nullptr;  // block input (an entry of acts_)
  int64_t B = 0, S = 0, T = 0;
  DeviceArray<float> a1, rstd1, q, k, v, o, lse, mid, a2, rstd2, tmp, dtmp, dq, dk, dv, dout_heads;
  FfnActs dense, shared, experts;
  // MoE state (MoeLayer): router outputs, order, expert rows
  DeviceArray<float> logits, scores, probs, rlse, weights, dweights, dlogits, dprobs, dlse, xs, ye, shared_out;
  DeviceArray<int32_t> idx, row_token;
  DeviceArray<int64_t> slot;
  std::vector<int64_t> offsets;
  int64_t rows = 0;
  bool has_dprobs = false, has_dlse = false;
};

GpuTransformer::GpuTransformer(const ModelConfig& cfg, ParamStore& host) : cfg_(cfg) {
  MOE_CHECK(cuda::available(), "GPU model: no CUDA device can be used");
  MOE_CHECK(cfg.moe.num_experts == 0 || cfg.moe.lbl_scope == "micro",
            "GPU model: model.moe.lbl_scope '" << cfg.moe.lbl_scope << "' is not on the GPU yet (micro only)");
  MOE_CHECK(cfg.moe.router.bias_update_rate <= 0,
            "GPU model: model.moe.router.bias_update_rate > 0 (expert-bias balancing) is not on the GPU yet");
  for (Param* p : host.params()) {
    MOE_CHECK(!p->sharded(), "GPU model: parameter " << p->name << " is sharded; the GPU model runs on one rank");
    const std::vector<float> zeros(size_t(p->value.numel()), 0.0f);
    DevParam d{DeviceArray<float>(size_t(p->value.numel())), DeviceArray<float>(zeros), DeviceArray<float>(zeros),
               DeviceArray<float>(zeros), p->decay()};
    cuda::copy_to_device(d.value.data(), p->value.data(), sizeof(float) * p->value.numel());
    params_.emplace(p->name, std::move(d));
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

float* GpuTransformer::w(const std::string& name) {
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end(), "GPU model: no parameter " << name);
  return it->second.value.data();
}

float* GpuTransformer::g(const std::string& name) {
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end(), "GPU model: no parameter " << name);
  return it->second.grad.data();
}

const float* GpuTransformer::buffer(const std::string& name) const {
  auto it = buffers_.find(name);
  return it == buffers_.end() ? nullptr : it->second.data();
}

void GpuTransformer::zero_grad() {
  for (auto& [name, p] : params_) {
    std::vector<float> zeros(p.grad.size(), 0.0f);
    p.grad.upload(zeros);
  }
}

double GpuTransformer::optimizer_step(const OptimConfig& o, double lr, double grad_clip) {
  std::vector<const float*> grads;
  std::vector<int64_t> sizes;
  std::vector<cuda::AdamWTensor> tensors;
  for (auto& [name, p] : params_) {
    grads.push_back(p.grad.data());
    sizes.push_back(int64_t(p.grad.size()));
    tensors.push_back({p.value.data(), p.grad.data(), p.m.data(), p.v.data(), nullptr, int64_t(p.value.size()),
                       p.decay ? float(o.weight_decay) : 0.0f});
  }
  const double norm = std::sqrt(cuda::sum_squares_many(grads.data(), sizes.data(), int(grads.size())));
  const double coef = (grad_clip <= 0 || !(norm > grad_clip)) ? 1.0 : grad_clip / norm;  // clip_coefficient
  ++optimizer_steps_;
  const float bc1 = float(1.0 - std::pow(o.beta1, double(optimizer_steps_)));
  const float bc2 = float(1.0 - std::pow(o.beta2, double(optimizer_steps_)));
  cuda::adamw_update_many(tensors.data(), int(tensors.size()), float(lr), float(o.beta1), float(o.beta2),
                          float(o.eps), bc1, bc2, float(coef));
  return norm;
}

void GpuTransformer::download_values(ParamStore& host) const {
  for (Param* p : host.params()) {
    auto it = params_.find(p->name);
    MOE_CHECK(it != params_.end(), "GPU model: no parameter " << p->name);
    cuda::copy_to_host(p->value.data(), it->second.value.data(), sizeof(float) * p->value.numel());
  }
}

void GpuTransformer::download_grads(ParamStore& host) const {
  for (Param* p : host.params()) {
    auto it = params_.find(p->name);
    MOE_CHECK(it != params_.end(), "GPU model: no parameter " << p->name);
    cuda::copy_to_host(p->grad.data(), it->second.grad.data(), sizeof(float) * p->grad.numel());
  }
}

MicroBatchLoss GpuTransformer::forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S,
                                                float grad_scale) {
  const int64_t T = B * S, D = cfg_.d_model, L = cfg_.n_layers, V = cfg_.vocab_size;
  const int64_t H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim(), dq = H * hd, dkv = Hkv * hd;
  const float eps = float(cfg_.norm_eps);
  const auto& mc = cfg_.moe;
  const int64_t E = mc.num_experts, K = mc.top_k, Fe = mc.expert_hidden;
  const int64_t Fs = int64_t(mc.num_shared_experts) * mc.shared_expert_hidden;
  for (int64_t t = 0; t < T; ++t)
    MOE_CHECK(tokens[t] >= 0 && tokens[t] < V && targets[t] >= 0 && targets[t] < V,
              "token id out of range [0, " << V << ") at position " << t);
  tokens_ = DeviceArray<int32_t>(std::vector<int32_t>(tokens, tokens + T));
  targets_ = DeviceArray<int32_t>(std::vector<int32_t>(targets, targets + T));
  acts_.resize(L + 1);
  for (auto& a : acts_) ensure(a, T * D);
  MicroBatchLoss loss;

  // ---- forward (Transformer::forward_backward, TransformerBlock::forward) ----
  cuda::embedding_forward(tokens_.data(), w("embed/weight"), acts_[0].data(), T, D);
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
    cuda::rms_norm_forward(b.x, w(p + "/attn_norm/weight"), b.a1.data(), b.rstd1.data(), T, D, eps);
    cuda::gemm(false, true, T, dq, D, 1.0f, b.a1.data(), D, w(p + "/attn/wq"), D, 0.0f, b.q.data(), dq);
    cuda::gemm(false, true, T, dkv, D, 1.0f, b.a1.data(), D, w(p + "/attn/wk"), D, 0.0f, b.k.data(), dkv);
    cuda::gemm(false, true, T, dkv, D, 1.0f, b.a1.data(), D, w(p + "/attn/wv"), D, 0.0f, b.v.data(), dkv);
    cuda::rope_forward(b.q.data(), B, S, H, hd, cfg_.rope_theta);
    cuda::rope_forward(b.k.data(), B, S, Hkv, hd, cfg_.rope_theta);
    cuda::attention_forward(b.q.data(), b.k.data(), b.v.data(), b.o.data(), b.lse.data(), B, S, H, Hkv, hd);
    cuda::gemm(false, true, T, D, dq, 1.0f, b.o.data(), dq, w(p + "/attn/wo"), dq, 0.0f, b.tmp.data(), D);
    cuda::add(b.x, b.tmp.data(), b.mid.data(), T * D);
    cuda::rms_norm_forward(b.mid.data(), w(p + "/ffn_norm/weight"), b.a2.data(), b.rstd2.data(), T, D, eps);
    if (!b.moe) {
      swiglu_ffn_forward(b.a2.data(), w(p + "/ffn/w1"), w(p + "/ffn/w3"), w(p + "/ffn/w2"), T, D, cfg_.ffn_hidden,
                         b.dense, b.tmp.data());
    } else {
      // gate (MoeLayer::forward, router_fwd)
      ensure(b.logits, T * E);
      ensure(b.scores, T * E);
      ensure(b.probs, T * E);
      ensure(b.rlse, T);
      ensure(b.weights, T * K);
      ensure(b.idx, T * K);
      cuda::gemm(false, true, T, E, D, 1.0f, b.a2.data(), D, w(p + "/moe/router/weight"), D, 0.0f, b.logits.data(), E);
      cuda::router_forward(b.logits.data(), buffer(p + "/moe/router/expert_bias"), T, E, K, mc.score == "sigmoid",
                           mc.norm_topk, b.scores.data(), b.probs.data(), b.rlse.data(), b.idx.data(),
                           b.weights.data());
      // order (capacity: MoeLayer::capacities on one rank)
      std::vector<int64_t> cap;
      if (mc.capacity_factor > 0)
        cap.assign(E, int64_t(std::ceil(mc.capacity_factor * double(K) * double(T) / double(E))));
      std::vector<int64_t> counts(E);
      b.offsets.assign(E + 1, 0);
      ensure(b.slot, T * K);
      ensure(b.row_token, T * K);
      b.rows = cuda::moe_order(b.idx.data(), T, K, E, cap.empty() ? nullptr : cap.data(), counts.data(),
                               b.offsets.data(), b.slot.data(), b.row_token.data());
      // balancing losses (MoeLayer::balancing_losses, lbl_scope micro): values on the host
      b.has_dprobs = mc.aux_loss_coef > 0;
      if (b.has_dprobs) {
        const double coef = mc.aux_loss_coef * double(E);
        std::vector<float> probs = b.probs.download(), dprobs(static_cast<size_t>(T * E));
        for (int64_t i = 0; i < T; ++i)
          for (int64_t e = 0; e < E; ++e) {
            const double f = double(counts[e]) / double(K * T);
            loss.aux += coef * f * probs[i * E + e] / double(T);
            dprobs[i * E + e] = float(coef * f / double(T) * grad_scale);
          }
        b.dprobs = DeviceArray<float>(dprobs);
      }
      b.has_dlse = mc.z_loss_coef > 0;
      if (b.has_dlse) {
        std::vector<float> lse = b.rlse.download(), dlse(static_cast<size_t>(T));
        for (int64_t i = 0; i < T; ++i) {
          loss.aux += mc.z_loss_coef * double(lse[i]) * lse[i] / double(T);
          dlse[i] = float(mc.z_loss_coef * 2.0 * lse[i] / double(T) * grad_scale);
        }
        b.dlse = DeviceArray<float>(dlse);
      }
      // gather, grouped experts (GroupedExperts::forward), unorder
      ensure(b.xs, std::max<int64_t>(b.rows, 1) * D);
      ensure(b.ye, std::max<int64_t>(b.rows, 1) * D);
      b.experts.resize(std::max<int64_t>(b.rows, 1), Fe);
      cuda::moe_gather(b.a2.data(), b.row_token.data(), b.rows, D, b.xs.data());
      const int64_t* off = b.offsets.data();
      cuda::gemm_grouped_rows(E, E, off, true, Fe, D, 1.0f, b.xs.data(), D, w(p + "/moe/experts/w1"), Fe * D, D, 0.0f,
                              b.experts.g.data(), Fe);
      cuda::gemm_grouped_rows(E, E, off, true, Fe, D, 1.0f, b.xs.data(), D, w(p + "/moe/experts/w3"), Fe * D, D, 0.0f,
                              b.experts.u.data(), Fe);
      cuda::swiglu_forward(b.experts.g.data(), b.experts.u.data(), b.experts.h.data(), b.rows * Fe);
      cuda::gemm_grouped_rows(E, E, off, true, D, Fe, 1.0f, b.experts.h.data(), Fe, w(p + "/moe/experts/w2"), D * Fe,
                              Fe, 0.0f, b.ye.data(), D);
      cuda::moe_unorder_forward(b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.tmp.data());
      if (Fs > 0) {
        ensure(b.shared_out, T * D);
        swiglu_ffn_forward(b.a2.data(), w(p + "/moe/shared/w1"), w(p + "/moe/shared/w3"), w(p + "/moe/shared/w2"), T,
                           D, Fs, b.shared, b.shared_out.data());
        cuda::add_inplace(b.tmp.data(), b.shared_out.data(), T * D);
      }
    }
    cuda::add(b.mid.data(), b.tmp.data(), acts_[l + 1].data(), T * D);
  }
  // final norm, LM head and cross-entropy, fused and chunked over the vocabulary
  ensure(hf_, T * D);
  ensure(rstd_f_, T);
  ensure(dh_, T * D);
  ensure(dtmp_, T * D);
  ensure(loss_, T);
  const int64_t chunk = std::min<int64_t>(V, 8192);
  ensure(lm_scratch_, T * chunk);
  cuda::rms_norm_forward(acts_[L].data(), w("final_norm/weight"), hf_.data(), rstd_f_.data(), T, D, eps);
  const std::string lm = cfg_.tie_embeddings ? "embed/weight" : "lm_head/weight";
  cuda::lm_head_cross_entropy(hf_.data(), w(lm), targets_.data(), T, D, V, chunk, grad_scale / float(T), loss_.data(),
                              dh_.data(), g(lm), lm_scratch_.data());
  double ce_sum = 0;
  for (float x : loss_.download()) ce_sum += x;
  loss.ce = ce_sum / double(T);

  // ---- backward (TransformerBlock::backward in reverse) ----
  cuda::rms_norm_backward(acts_[L].data(), w("final_norm/weight"), rstd_f_.data(), dh_.data(), dtmp_.data(),
                          g("final_norm/weight"), T, D);
  float* dout = dtmp_.data();  // the residual-stream gradient, updated in place block by block
  for (int64_t l = L - 1; l >= 0; --l) {
    Block& b = *blocks_[l];
    const std::string& p = b.prefix;
    // FFN branch -> gradient of a2 in b.tmp
    if (!b.moe) {
      swiglu_ffn_backward(b.a2.data(), w(p + "/ffn/w1"), w(p + "/ffn/w3"), w(p + "/ffn/w2"), g(p + "/ffn/w1"),
                          g(p + "/ffn/w3"), g(p + "/ffn/w2"), T, D, cfg_.ffn_hidden, b.dense, dout, b.tmp.data(),
                          false);
    } else {
      ensure(b.dweights, T * K);
      ensure(b.dlogits, T * E);
      // unorder backward: dye in place of ye, routing-weight gradients
      cuda::moe_unorder_backward(dout, b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.ye.data(),
                                 b.dweights.data());
      // grouped experts backward (GroupedExperts::backward): dxs in place of xs
      const int64_t* off = b.offsets.data();
      float *hh = b.experts.h.data(), *gg = b.experts.g.data(), *uu = b.experts.u.data();
      cuda::gemm_grouped_weight_grad(E, E, off, D, Fe, b.ye.data(), D, hh, Fe, g(p + "/moe/experts/w2"), D * Fe);
      cuda::gemm_grouped_rows(E, E, off, false, Fe, D, 1.0f, b.ye.data(), D, w(p + "/moe/experts/w2"), D * Fe, Fe,
                              0.0f, hh, Fe);
      cuda::swiglu_backward(gg, uu, hh, gg, uu, b.rows * Fe);
      cuda::gemm_grouped_weight_grad(E, E, off, Fe, D, gg, Fe, b.xs.data(), D, g(p + "/moe/experts/w1"), Fe * D);
      cuda::gemm_grouped_weight_grad(E, E, off, Fe, D, uu, Fe, b.xs.data(), D, g(p + "/moe/experts/w3"), Fe * D);
      cuda::gemm_grouped_rows(E, E, off, false, D, Fe, 1.0f, gg, Fe, w(p + "/moe/experts/w1"), Fe * D, D, 0.0f,
                              b.xs.data(), D);
      cuda::gemm_grouped_rows(E, E, off, false, D, Fe, 1.0f, uu, Fe, w(p + "/moe/experts/w3"), Fe * D, D, 1.0f,
                              b.xs.data(), D);
      cuda::moe_gather_backward(b.xs.data(), b.slot.data(), T, K, D, b.tmp.data());
      // router backward (router_bwd)
      cuda::router_backward(b.logits.data(), b.scores.data(), b.probs.data(), b.rlse.data(), b.idx.data(),
                            b.dweights.data(), b.has_dprobs ? b.dprobs.data() : nullptr,
                            b.has_dlse ? b.dlse.data() : nullptr, T, E, K, mc.score == "sigmoid", mc.norm_topk,
                            b.dlogits.data());
      cuda::gemm(true, false, E, D, T, 1.0f, b.dlogits.data(), E, b.a2.data(), D, 1.0f, g(p + "/moe/router/weight"), D);
      cuda::gemm(false, false, T, D, E, 1.0f, b.dlogits.data(), E, w(p + "/moe/router/weight"), D, 1.0f, b.tmp.data(),
                 D);
      if (Fs > 0)
        swiglu_ffn_backward(b.a2.data(), w(p + "/moe/shared/w1"), w(p + "/moe/shared/w3"), w(p + "/moe/shared/w2"),
                            g(p + "/moe/shared/w1"), g(p + "/moe/shared/w3"), g(p + "/moe/shared/w2"), T, D, Fs,
                            b.shared, dout, b.tmp.data(), true);
    }
    cuda::rms_norm_backward(b.mid.data(), w(p + "/ffn_norm/weight"), b.rstd2.data(), b.tmp.data(), b.dtmp.data(),
                            g(p + "/ffn_norm/weight"), T, D);
    cuda::add_inplace(dout, b.dtmp.data(), T * D);  // dout now holds dmid
    // attention branch (AttentionLayer::backward)
    ensure(b.dout_heads, T * dq);
    ensure(b.dq, T * dq);
    ensure(b.dk, T * dkv);
    ensure(b.dv, T * dkv);
    cuda::gemm(false, false, T, dq, D, 1.0f, dout, D, w(p + "/attn/wo"), dq, 0.0f, b.dout_heads.data(), dq);
    cuda::gemm(true, false, D, dq, T, 1.0f, dout, D, b.o.data(), dq, 1.0f, g(p + "/attn/wo"), dq);
    cuda::attention_backward(b.q.data(), b.k.data(), b.v.data(), b.o.data(), b.lse.data(), b.dout_heads.data(),
                             b.dq.data(), b.dk.data(), b.dv.data(), B, S, H, Hkv, hd);
    cuda::rope_backward(b.dq.data(), B, S, H, hd, cfg_.rope_theta);
    cuda::rope_backward(b.dk.data(), B, S, Hkv, hd, cfg_.rope_theta);
    cuda::gemm(true, false, dq, D, T, 1.0f, b.dq.data(), dq, b.a1.data(), D, 1.0f, g(p + "/attn/wq"), D);
    cuda::gemm(true, false, dkv, D, T, 1.0f, b.dk.data(), dkv, b.a1.data(), D, 1.0f, g(p + "/attn/wk"), D);
    cuda::gemm(true, false, dkv, D, T, 1.0f, b.dv.data(), dkv, b.a1.data(), D, 1.0f, g(p + "/attn/wv"), D);
    cuda::gemm(false, false, T, D, dq, 1.0f, b.dq.data(), dq, w(p + "/attn/wq"), D, 0.0f, b.tmp.data(), D);
    cuda::gemm(false, false, T, D, dkv, 1.0f, b.dk.data(), dkv, w(p + "/attn/wk"), D, 1.0f, b.tmp.data(), D);
    cuda::gemm(false, false, T, D, dkv, 1.0f, b.dv.data(), dkv, w(p + "/attn/wv"), D, 1.0f, b.tmp.data(), D);
    cuda::rms_norm_backward(b.x, w(p + "/attn_norm/weight"), b.rstd1.data(), b.tmp.data(), b.dtmp.data(),
                            g(p + "/attn_norm/weight"), T, D);
    cuda::add_inplace(dout, b.dtmp.data(), T * D);  // dx = dmid + attn_norm'(attn'(dmid))
  }
  cuda::embedding_backward(tokens_.data(), dout, g("embed/weight"), T, D);
  cuda::synchronize();
  return loss;
}

}  // namespace moe::gpu
