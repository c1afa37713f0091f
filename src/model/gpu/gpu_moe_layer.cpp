// GpuTransformer's MoE layer (MoeLayer::forward / backward on the GPU): the gate, the order stage
// with capacity, the expert stage (gpu_experts.cpp), the balancing losses (gpu_moe_stats.cpp) and
// the shared experts, on this rank's slice of the block's tokens; under tensor parallelism each tp
// rank takes T / tp of them and the slices' outputs and input gradients are all-gathered.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/profiler.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/moe_order.h"
#include "kernels/router.h"
#include "model/gpu/gpu_block.h"
#include "model/gpu/gpu_transformer.h"
#include "model/moe_layer.h"

namespace moe::gpu {

void GpuTransformer::tp_all_reduce(float* x, int64_t n) {
  if (P_ == 1) return;
  GpuPhase phase("tp_allreduce", phase_timing_);
  tp_.device->all_reduce_sum(x, n);
}

void GpuTransformer::moe_forward(Block& b, bool backward, float grad_scale, MicroBatchLoss& loss) {
  const std::string& p = b.prefix;
  const auto& mc = cfg_.moe;
  const int64_t T = b.T, D = cfg_.d_model, E = E_, K = mc.top_k;
  const int64_t Fs = int64_t(mc.num_shared_experts) * mc.shared_expert_hidden;
  b.Tm = T / P_;
  b.t0 = b.Tm * (P_ > 1 ? tp_.host->rank() : 0);
  const int64_t Tm = b.Tm;
  b.moe_in = b.a2.data() + b.t0 * D;
  if (P_ > 1) ensure(b.slice_out, Tm * D);
  b.moe_out = P_ > 1 ? b.slice_out.data() : b.tmp.data();
  {  // gate (router_fwd)
    GpuPhase phase("router_fwd", phase_timing_);
    ensure(b.logits, Tm * E);
    ensure(b.scores, Tm * E);
    ensure(b.probs, Tm * E);
    ensure(b.rlse, Tm);
    ensure(b.weights, Tm * K);
    ensure(b.idx, Tm * K);
    cuda::gemm(false, true, Tm, E, D, 1.0f, b.moe_in, D, w(p + "/moe/router/weight"), D, 0.0f, b.logits.data(), E);
    cuda::router_forward(b.logits.data(), buffer(p + "/moe/router/expert_bias"), Tm, E, K, mc.score == "sigmoid",
                         mc.norm_topk, b.scores.data(), b.probs.data(), b.rlse.data(), b.idx.data(), b.weights.data());
  }
  std::vector<int64_t> counts(static_cast<size_t>(E));  // this slice's copies per expert before capacity dropping
  {                                                     // order
    GpuPhase phase("moe_order", phase_timing_);
    std::vector<int64_t> slice_counts(static_cast<size_t>(E), 0);  // before dropping: needed under tp only
    if (P_ > 1 && mc.capacity_factor > 0)
      for (int32_t e : b.idx.download()) slice_counts[size_t(e)]++;
    const std::vector<int64_t> cap = slice_capacities(mc, T, slice_counts, P_ > 1 ? tp_.host : nullptr);
    b.offsets.assign(size_t(E + 1), 0);
    ensure(b.slot, Tm * K);
    ensure(b.row_token, Tm * K);
    b.rows = cuda::moe_order(b.idx.data(), Tm, K, E, cap.empty() ? nullptr : cap.data(), counts.data(),
                             b.offsets.data(), b.slot.data(), b.row_token.data());
    if (backward) fetch_balancing_inputs(b);  // the device is idle here (moe_order waited for it)
  }
  if (ep_host_ && ep_host_->size() > 1 && ep_chunks_ == 0) {  // the first MoE forward: measure and choose
    GpuPhase phase("ep_chunk_choice", phase_timing_);
    ep_chunks_ = choose_ep_chunks(b, Tm * K);
    make_dispatchers();
  }
  {  // gather, [dispatch,] grouped experts, [combine,] unorder
    GpuPhase phase("experts_fwd", phase_timing_);
    experts_forward(b);
  }
  if (backward) {  // as the CPU: training only; on the host while the device runs the experts
    GpuPhase phase("router_fwd", phase_timing_);
    balancing_losses(b, counts, b.B, b.S, grad_scale, loss);
  }
  if (Fs > 0) {
    GpuPhase phase("shared_ffn_fwd", phase_timing_);
    ensure(b.shared_out, Tm * D);
    b.shared.resize(Tm, Fs);
    swiglu_forward(p + "/moe/shared", b.moe_in, Tm, D, Fs, b.shared.g.data(), b.shared.u.data(), b.shared.h.data(),
                   b.shared_out.data());
    cuda::add_inplace(b.moe_out, b.shared_out.data(), Tm * D);
  }
  if (P_ > 1) {
    GpuPhase phase("tp_gather", phase_timing_);
    tp_.device->all_gather(b.moe_out, b.tmp.data(), Tm * D);
  }
}

void GpuTransformer::moe_backward(Block& b, const float* dy_full) {
  const std::string& p = b.prefix;
  const auto& mc = cfg_.moe;
  const int64_t D = cfg_.d_model, E = E_, K = mc.top_k, Tm = b.Tm;
  const int64_t Fs = int64_t(mc.num_shared_experts) * mc.shared_expert_hidden;
  const float* dy = dy_full + b.t0 * D;  // this slice's output gradient
  {
    GpuPhase phase("experts_bwd", phase_timing_);
    experts_backward(b, dy);  // the input rows' gradient into b.moe_out
  }
  {  // router backward (router_bwd)
    GpuPhase phase("router_bwd", phase_timing_);
    ensure(b.dlogits, Tm * E);
    cuda::router_backward(b.logits.data(), b.scores.data(), b.probs.data(), b.rlse.data(), b.idx.data(),
                          b.dweights.data(), b.has_dprobs ? b.dprobs.data() : nullptr,
                          b.has_dlse ? b.dlse.data() : nullptr, Tm, E, K, mc.score == "sigmoid", mc.norm_topk,
                          b.dlogits.data());
    cuda::gemm(true, false, E, D, Tm, 1.0f, b.dlogits.data(), E, b.moe_in, D, 1.0f, g(p + "/moe/router/weight"), D);
    cuda::gemm(false, false, Tm, D, E, 1.0f, b.dlogits.data(), E, w(p + "/moe/router/weight"), D, 1.0f, b.moe_out, D);
  }
  if (Fs > 0) {
    GpuPhase phase("shared_ffn_bwd", phase_timing_);
    swiglu_backward(p + "/moe/shared", b.moe_in, Tm, D, Fs, b.shared.g.data(), b.shared.u.data(), b.shared.h.data(), dy,
                    b.moe_out, true);
  }
  if (P_ > 1) {
    GpuPhase phase("tp_gather", phase_timing_);
    tp_.device->all_gather(b.moe_out, b.tmp.data(), Tm * D);
  }
}

}  // namespace moe::gpu
