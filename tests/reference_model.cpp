// Plain-loop double-precision reference of SPEC section 1.
#include "reference_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace moe::test {
namespace {

using Mat = std::vector<double>;  // row-major

const float* W(ParamStore& p, const std::string& name) { return p.find(name)->value.data(); }

Mat matmul_wt(const Mat& x, int64_t T, int64_t in, const float* w, int64_t out) {  // x W^T, W: [out, in]
  Mat y(T * out, 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i) s += x[t * in + i] * w[o * in + i];
      y[t * out + o] = s;
    }
  return y;
}

Mat rmsnorm(const Mat& x, int64_t T, int64_t D, const float* w, double eps) {
  Mat y(T * D);
  for (int64_t t = 0; t < T; ++t) {
    double ms = 0;
    for (int64_t i = 0; i < D; ++i) ms += x[t * D + i] * x[t * D + i];
    ms /= D;
    for (int64_t i = 0; i < D; ++i) y[t * D + i] = x[t * D + i] / std::sqrt(ms + eps) * w[i];
  }
  return y;
}

Mat swiglu(const Mat& x, int64_t T, int64_t D, int64_t F, const float* w1, const float* w3, const float* w2) {
  Mat g = matmul_wt(x, T, D, w1, F), u = matmul_wt(x, T, D, w3, F);
  for (int64_t i = 0; i < T * F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  return matmul_wt(g, T, F, w2, D);
}

void rope(Mat& x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t i = 0; i < hd / 2; ++i) {
          double* v = &x[((b * S + s) * nh + h) * hd];
          double ang = double(s) * std::pow(theta, -2.0 * double(i) / double(hd));
          double a = v[i], c = v[i + hd / 2];
          v[i] = a * std::cos(ang) - c * std::sin(ang);
          v[i + hd / 2] = c * std::cos(ang) + a * std::sin(ang);
        }
}

}  // namespace

ReferenceLoss reference_forward(const Config& cfg, ParamStore& P, const std::vector<int32_t>& tokens,
                                const std::vector<int32_t>& targets, int64_t B, int64_t S, ReferenceStepState& state) {
  const auto& m = cfg.model;
  const auto& mo = m.moe;
  const int64_t T = B * S, D = m.d_model, H = m.n_heads, Hkv = m.n_kv_heads, hd = D / H, V = m.vocab_size;
  const int64_t E = mo.num_experts, k = mo.top_k;
  if (state.counts.empty()) {
    state.counts.assign(m.n_layers, std::vector<double>(E, 0.0));
    state.tokens.assign(m.n_layers, 0.0);
  }
  ReferenceLoss loss;
  Mat h(T * D);
  const float* emb = W(P, "embed/weight");
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) h[t * D + i] = emb[tokens[t] * D + i];

  for (int l = 0; l < m.n_layers; ++l) {
    const std::string pre = "layers/" + std::to_string(l) + "/";
    // attention
    Mat a = rmsnorm(h, T, D, W(P, pre + "attn_norm/weight"), m.norm_eps);
    Mat q = matmul_wt(a, T, D, W(P, pre + "attn/wq"), H * hd);
    Mat kk = matmul_wt(a, T, D, W(P, pre + "attn/wk"), Hkv * hd);
    Mat v = matmul_wt(a, T, D, W(P, pre + "attn/wv"), Hkv * hd);
    rope(q, B, S, H, hd, m.rope_theta);
    rope(kk, B, S, Hkv, hd, m.rope_theta);
    Mat o(T * H * hd, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t hh = 0; hh < H; ++hh) {
        int64_t kvh = hh / (H / Hkv);
        for (int64_t i = 0; i < S; ++i) {
          std::vector<double> sc(i + 1);
          for (int64_t j = 0; j <= i; ++j) {
            double d = 0;
            for (int64_t c = 0; c < hd; ++c)
              d += q[((b * S + i) * H + hh) * hd + c] * kk[((b * S + j) * Hkv + kvh) * hd + c];
            sc[j] = d / std::sqrt(double(hd));
          }
          double mx = *std::max_element(sc.begin(), sc.end()), z = 0;
          for (auto& x : sc) z += (x = std::exp(x - mx));
          for (int64_t j = 0; j <= i; ++j)
            for (int64_t c = 0; c < hd; ++c)
              o[((b * S + i) * H + hh) * hd + c] += sc[j] / z * v[((b * S + j) * Hkv + kvh) * hd + c];
        }
      }
    Mat ao = matmul_wt(o, T, H * hd, W(P, pre + "attn/wo"), D);
    for (int64_t i = 0; i < T * D; ++i) h[i] += ao[i];

    // feed-forward
    a = rmsnorm(h, T, D, W(P, pre + "ffn_norm/weight"), m.norm_eps);
    Mat y(T * D, 0.0);
    if (!m.is_moe_layer(l)) {
      y = swiglu(a, T, D, m.ffn_hidden, W(P, pre + "ffn/w1"), W(P, pre + "ffn/w3"), W(P, pre + "ffn/w2"));
    } else {
      const int64_t Fe = mo.expert_hidden;
      Mat logits = matmul_wt(a, T, D, W(P, pre + "moe/router/weight"), E);
      const float* bias = mo.router.bias_update_rate > 0 ? P.find_buffer(pre + "moe/router/expert_bias")->value.data()
                                                         : nullptr;
      Mat score(T * E), prob(T * E);
      std::vector<std::vector<int>> chosen(T);
      std::vector<std::vector<double>> weight(T);
      std::vector<double> counts(E, 0.0);
      double zsum = 0;
      for (int64_t t = 0; t < T; ++t) {
        double mx = -1e300, z = 0, ssum = 0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, logits[t * E + e]);
        for (int64_t e = 0; e < E; ++e) z += std::exp(logits[t * E + e] - mx);
        double lse = mx + std::log(z);
        zsum += lse * lse;
        for (int64_t e = 0; e < E; ++e) {
          double lg = logits[t * E + e];
          score[t * E + e] = mo.score == "sigmoid" ? 1.0 / (1.0 + std::exp(-lg)) : std::exp(lg - lse);
          ssum += score[t * E + e];
        }
        for (int64_t e = 0; e < E; ++e) prob[t * E + e] = score[t * E + e] / ssum;  // = softmax for softmax scoring
        std::vector<int> ord(E);
        std::iota(ord.begin(), ord.end(), 0);
        std::stable_sort(ord.begin(), ord.end(), [&](int x, int yv) {
          return score[t * E + x] + (bias ? bias[x] : 0.0) > score[t * E + yv] + (bias ? bias[yv] : 0.0);
        });
        double wsum = 0;
        for (int64_t j = 0; j < k; ++j) wsum += score[t * E + ord[j]];
        for (int64_t j = 0; j < k; ++j) {
          chosen[t].push_back(ord[j]);
          weight[t].push_back(mo.norm_topk && k > 1 ? score[t * E + ord[j]] / wsum : score[t * E + ord[j]]);
          counts[ord[j]] += 1;
        }
      }
      // capacity: first come first served in token order
      int64_t cap = mo.capacity_factor > 0 ? int64_t(std::ceil(mo.capacity_factor * k * T / double(E))) : -1;
      std::vector<int64_t> used(E, 0);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < k; ++j) {
          int e = chosen[t][j];
          if (cap >= 0 && used[e] >= cap) continue;
          used[e]++;
          Mat xt(a.begin() + t * D, a.begin() + (t + 1) * D);
          const float* w1 = W(P, pre + "moe/experts/w1") + int64_t(e) * Fe * D;
          const float* w3 = W(P, pre + "moe/experts/w3") + int64_t(e) * Fe * D;
          const float* w2 = W(P, pre + "moe/experts/w2") + int64_t(e) * D * Fe;
          Mat ye = swiglu(xt, 1, D, Fe, w1, w3, w2);
          for (int64_t i = 0; i < D; ++i) y[t * D + i] += weight[t][j] * ye[i];
        }
      if (mo.num_shared_experts > 0) {
        Mat ys = swiglu(a, T, D, int64_t(mo.num_shared_experts) * mo.shared_expert_hidden, W(P, pre + "moe/shared/w1"),
                        W(P, pre + "moe/shared/w3"), W(P, pre + "moe/shared/w2"));
        for (int64_t i = 0; i < T * D; ++i) y[i] += ys[i];
      }
      // load-balancing loss
      double lbl = 0;
      if (mo.lbl_scope == "seq") {
        for (int64_t b = 0; b < B; ++b) {
          std::vector<double> c(E, 0.0), p(E, 0.0);
          for (int64_t t = b * S; t < (b + 1) * S; ++t)
            for (int64_t e = 0; e < E; ++e) p[e] += prob[t * E + e] / double(S);
          for (int64_t t = b * S; t < (b + 1) * S; ++t)
            for (int e : chosen[t]) c[e] += 1;
          double s = 0;
          for (int64_t e = 0; e < E; ++e) s += c[e] / double(k * S) * p[e];
          lbl += mo.aux_loss_coef * E * s / double(B);
        }
      } else {
        std::vector<double> p(E, 0.0);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t e = 0; e < E; ++e) p[e] += prob[t * E + e] / double(T);
        std::vector<double> f(E);
        if (mo.lbl_scope == "global") {
          for (int64_t e = 0; e < E; ++e) state.counts[l][e] += counts[e];
          state.tokens[l] += double(T);
          for (int64_t e = 0; e < E; ++e) f[e] = state.counts[l][e] / (k * state.tokens[l]);
        } else {
          for (int64_t e = 0; e < E; ++e) f[e] = counts[e] / double(k * T);
        }
        double s = 0;
        for (int64_t e = 0; e < E; ++e) s += f[e] * p[e];
        lbl = mo.aux_loss_coef * E * s;
      }
      loss.aux += lbl + mo.z_loss_coef * zsum / double(T);
    }
    for (int64_t i = 0; i < T * D; ++i) h[i] += y[i];
  }
  Mat hf = rmsnorm(h, T, D, W(P, "final_norm/weight"), m.norm_eps);
  Mat logits = matmul_wt(hf, T, D, W(P, m.tie_embeddings ? "embed/weight" : "lm_head/weight"), V);
  for (int64_t t = 0; t < T; ++t) {
    double mx = -1e300, z = 0;
    for (int64_t v2 = 0; v2 < V; ++v2) mx = std::max(mx, logits[t * V + v2]);
    for (int64_t v2 = 0; v2 < V; ++v2) z += std::exp(logits[t * V + v2] - mx);
    loss.ce += (mx + std::log(z) - logits[t * V + targets[t]]) / double(T);
  }
  return loss;
}

}  // namespace moe::test
