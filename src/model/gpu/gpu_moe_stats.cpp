// GpuTransformer's MoE statistics (MoeLayer::balancing_losses and end_step on the GPU model): the
// balancing losses of every lbl_scope, computed on the host from the router's [T, E] outputs
// (downloaded while the device is idle after the order stage; the host work then overlaps the
// experts' GEMMs), the per-step expert counts summed over the token group, and the expert-bias
// update at the end of a step. Under tensor parallelism each tp rank has its slice of the
// micro-batch's tokens; the counts and losses are summed over tp to be the micro-batch's.
#include <cmath>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/profiler.h"
#include "model/gpu/gpu_block.h"
#include "model/gpu/gpu_transformer.h"

namespace moe::gpu {

void GpuTransformer::fetch_balancing_inputs(Block& b) {
  const auto& mc = cfg_.moe;
  if (mc.aux_loss_coef > 0) b.probs_host = b.probs.download();
  if (mc.aux_loss_coef > 0 && mc.lbl_scope == "seq") b.idx_host = b.idx.download();
  if (mc.z_loss_coef > 0) b.lse_host = b.rlse.download();
}

void GpuTransformer::balancing_losses(Block& b, const std::vector<int64_t>& counts, int64_t B, int64_t S,
                                      float grad_scale, MicroBatchLoss& loss) {
  const auto& mc = cfg_.moe;
  // T: the micro-batch's tokens; this rank's slice (all of them without tp): rows [0, Tm) of the
  // router outputs, tokens [t0, t0 + Tm) of the micro-batch. Sums over the slices: over tp.
  const int64_t T = B * S, Tm = b.Tm, t0 = b.t0, E = E_, K = mc.top_k;
  Communicator* tp = P_ > 1 ? tp_.host : nullptr;
  std::vector<int64_t> global(counts);  // the counts of every rank's current slice
  const int ranks = token_group_ ? token_group_->size() : 1;
  if (ranks > 1) {
    ScopedPhase comm("moe_stats_sync");
    token_group_->all_reduce_sum(global.data(), E);
  }
  b.step_counts.resize(size_t(E), 0);
  for (int64_t e = 0; e < E; ++e) b.step_counts[size_t(e)] += global[size_t(e)];
  b.step_tokens += Tm * ranks;

  double partial[2] = {0.0, 0.0};  // this slice's share of lbl and z
  b.has_dprobs = mc.aux_loss_coef > 0;
  if (b.has_dprobs) {
    const double coef = mc.aux_loss_coef * double(E);
    const std::vector<float>& probs = b.probs_host;
    std::vector<float> dprobs(static_cast<size_t>(Tm * E));
    if (mc.lbl_scope == "seq") {  // per sequence: counts over the whole sequence, averaged over the sequences
      const std::vector<int32_t>& idx = b.idx_host;
      std::vector<int64_t> c(size_t(B * E), 0);
      for (int64_t i = 0; i < Tm; ++i)
        for (int64_t j = 0; j < K; ++j) c[size_t(((t0 + i) / S) * E + idx[size_t(i * K + j)])]++;
      if (tp) tp->all_reduce_sum(c.data(), B * E);
      for (int64_t i = 0; i < Tm; ++i) {
        const int64_t s = (t0 + i) / S;
        for (int64_t e = 0; e < E; ++e) {
          const double f = double(c[size_t(s * E + e)]) / double(K * S);
          partial[0] += coef * f * probs[size_t(i * E + e)] / double(S) / double(B);
          dprobs[size_t(i * E + e)] = float(coef * f / double(S) / double(B) * grad_scale);
        }
      }
    } else {  // micro: this micro-batch's counts; global: the step's so far, over the token group
      std::vector<int64_t> c(counts);
      if (tp && mc.lbl_scope != "global") tp->all_reduce_sum(c.data(), E);
      std::vector<double> f(static_cast<size_t>(E));
      for (int64_t e = 0; e < E; ++e)
        f[size_t(e)] = mc.lbl_scope == "global" ? double(b.step_counts[size_t(e)]) / double(K * b.step_tokens)
                                                : double(c[size_t(e)]) / double(K * T);
      for (int64_t i = 0; i < Tm; ++i)
        for (int64_t e = 0; e < E; ++e) {
          partial[0] += coef * f[size_t(e)] * probs[size_t(i * E + e)] / double(T);
          dprobs[size_t(i * E + e)] = float(coef * f[size_t(e)] / double(T) * grad_scale);
        }
    }
    ensure(b.dprobs, Tm * E);  // allocated once: no cudaMalloc / cudaFree per micro-batch
    b.dprobs.upload(dprobs);
  }
  b.has_dlse = mc.z_loss_coef > 0;
  if (b.has_dlse) {
    const std::vector<float>& lse = b.lse_host;
    std::vector<float> dlse(static_cast<size_t>(Tm));
    for (int64_t i = 0; i < Tm; ++i) {
      const double l = lse[size_t(i)];
      partial[1] += mc.z_loss_coef * l * l / double(T);
      dlse[size_t(i)] = float(mc.z_loss_coef * 2.0 * l / double(T) * grad_scale);
    }
    ensure(b.dlse, Tm);
    b.dlse.upload(dlse);
  }
  if (tp) tp->all_reduce_sum(partial, 2);  // the whole micro-batch's, as on one rank
  loss.aux += partial[0] + partial[1];
}

std::vector<std::pair<int, std::vector<int64_t>>> GpuTransformer::expert_loads() const {
  std::vector<std::pair<int, std::vector<int64_t>>> out;
  for (size_t l = 0; l < blocks_.size(); ++l) {
    if (!blocks_[l]->moe) continue;
    std::vector<int64_t> load = blocks_[l]->step_counts;
    load.resize(size_t(E_), 0);
    out.emplace_back(int(l), std::move(load));
  }
  return out;
}

void GpuTransformer::end_step() {
  const double rate = cfg_.moe.router.bias_update_rate;
  for (auto& bp : blocks_) {
    Block& b = *bp;
    if (!b.moe) continue;
    b.step_counts.resize(size_t(E_), 0);
    auto it = buffers_.find(b.prefix + "/moe/router/expert_bias");
    if (rate > 0 && it != buffers_.end()) {  // MoeLayer::end_step: towards the mean load, by the sign
      double mean = 0;
      for (int64_t c : b.step_counts) mean += double(c);
      mean /= double(E_);
      std::vector<float> bias = it->second.download();
      for (int64_t e = 0; e < E_; ++e) {
        const double diff = mean - double(b.step_counts[size_t(e)]);
        const float sign = diff > 0 ? 1.0f : (diff < 0 ? -1.0f : 0.0f);
        bias[size_t(e)] += float(rate) * sign;
      }
      it->second.upload(bias);
    }
    std::fill(b.step_counts.begin(), b.step_counts.end(), 0);
    b.step_tokens = 0;
  }
}

}  // namespace moe::gpu
