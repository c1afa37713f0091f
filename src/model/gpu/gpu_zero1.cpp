// ZeRO-1 on the GPU (GpuTransformer::set_zero): the AdamW moments of the replicated parameters split
// over the dp ranks, as optim/zero1.h does on the CPU. Per step: the replicated gradients copied
// into one flat vector and reduce-scattered into this rank's shard; the global norm from the shard
// (summed over dp, its tp-split pieces also over tp) and the expert gradients; AdamW on this rank's pieces of the
// weights (and their bf16 copies) and on the expert weights, in one launch; the updated pieces all-gathered and copied
// back into every weight. Moments cross to the host for checkpoints gathered (collective).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/adamw.h"
#include "kernels/elementwise.h"
#include "model/gpu/gpu_block.h"
#include "model/gpu/gpu_transformer.h"

namespace moe::gpu {

void GpuTransformer::set_zero(Communicator* dp_host, Communicator* dp_device) {
  MOE_CHECK(dp_host && dp_device && dp_host->size() == dp_device->size() && dp_host->size() > 1,
            "GPU model: ZeRO needs a host and a device communicator over the same data-parallel ranks");
  auto z = std::make_unique<ZeroShard>();
  z->host = dp_host;
  z->device = dp_device;
  for (auto& [name, p] : params_) {  // name order: the same flat vector on every rank
    if (p.expert) continue;
    z->slot_of[name] = z->slots.size();
    z->slots.push_back({&p, z->total, int64_t(p.value.size())});
    z->total += int64_t(p.value.size());
  }
  const int64_t ranks = dp_device->size();
  z->shard = (z->total + ranks - 1) / ranks;
  z->lo = dp_device->rank() * z->shard;
  for (const auto& s : z->slots) {
    const int64_t a = std::max(z->lo, s.offset), b = std::min(z->lo + z->shard, s.offset + s.n);
    if (a < b) z->pieces.push_back({s.p, a - s.offset, b - a, a - z->lo});
  }
  z->flat = DeviceArray<float>(size_t(z->shard * ranks));
  z->shard_grad = DeviceArray<float>(size_t(z->shard));
  z->shard_value = DeviceArray<float>(size_t(z->shard));
  z->m = DeviceArray<float>(size_t(z->shard));
  z->v = DeviceArray<float>(size_t(z->shard));
  z->m.zero();
  z->v.zero();
  for (const auto& pc : z->pieces) {  // moments uploaded so far: this rank's pieces move to the shard
    cuda::copy_on_device(z->m.data() + pc.at, pc.p->m.data() + pc.first, sizeof(float) * pc.count);
    cuda::copy_on_device(z->v.data() + pc.at, pc.p->v.data() + pc.first, sizeof(float) * pc.count);
  }
  for (auto& s : z->slots) s.p->m = DeviceArray<float>(), s.p->v = DeviceArray<float>();  // the memory ZeRO saves
  zero_ = std::move(z);
}

double GpuTransformer::zero_step(const OptimConfig& o, double lr, double grad_clip) {
  ZeroShard& z = *zero_;
  float* flat = z.flat.data();
  for (const auto& s : z.slots) cuda::copy_on_device(flat + s.offset, s.p->grad.data(), sizeof(float) * s.n);
  cuda::zero_device(flat + z.total, sizeof(float) * size_t(z.shard * z.device->size() - z.total));
  z.device->reduce_scatter_sum(flat, z.shard_grad.data(), z.shard);  // summed over dp: this rank's part
  // sums of squares: the shard's replicated and tp-split pieces over dp, the tp-split also over tp
  double sumsq[3] = {0.0, 0.0, 0.0};  // replicated, tp-split, expert
  for (int k = 0; k < 2; ++k) {
    std::vector<const float*> grads;
    std::vector<int64_t> sizes;
    for (const auto& pc : z.pieces)
      if (pc.p->tp_split == (k == 1)) grads.push_back(z.shard_grad.data() + pc.at), sizes.push_back(pc.count);
    if (!grads.empty()) sumsq[k] = cuda::sum_squares_many(grads.data(), sizes.data(), int(grads.size()));
  }
  z.host->all_reduce_sum(sumsq, 2);
  if (P_ > 1) tp_.host->all_reduce_sum(&sumsq[1], 1);
  std::vector<const float*> expert_grads;
  std::vector<int64_t> expert_sizes;
  std::vector<cuda::AdamWTensor> tensors;
  for (auto& [name, p] : params_) {
    if (!p.expert) continue;
    expert_grads.push_back(p.grad.data());
    expert_sizes.push_back(int64_t(p.grad.size()));
    tensors.push_back({p.value.data(), p.grad.data(), p.m.data(), p.v.data(),
                       p.bf16.size() > 0 ? static_cast<void*>(p.bf16.data()) : nullptr, int64_t(p.value.size()),
                       p.decay ? float(o.weight_decay) : 0.0f});
  }
  if (!expert_grads.empty())
    sumsq[2] = cuda::sum_squares_many(expert_grads.data(), expert_sizes.data(), int(expert_grads.size()));
  if (ep_host_ && ep_host_->size() > 1) ep_host_->all_reduce_sum(&sumsq[2], 1);  // each rank's experts once
  for (const auto& pc : z.pieces)
    tensors.push_back({pc.p->value.data() + pc.first, z.shard_grad.data() + pc.at, z.m.data() + pc.at,
                       z.v.data() + pc.at,
                       pc.p->bf16.size() > 0 ? static_cast<void*>(pc.p->bf16.data() + pc.first) : nullptr, pc.count,
                       pc.p->decay ? float(o.weight_decay) : 0.0f});
  const double norm = clip_and_update(o, lr, grad_clip, std::sqrt(sumsq[0] + sumsq[1] + sumsq[2]), tensors);
  // every rank's updated pieces to every rank
  for (const auto& pc : z.pieces)
    cuda::copy_on_device(z.shard_value.data() + pc.at, pc.p->value.data() + pc.first, sizeof(float) * pc.count);
  z.device->all_gather(z.shard_value.data(), flat, z.shard);
  for (const auto& s : z.slots) {
    cuda::copy_on_device(s.p->value.data(), flat + s.offset, sizeof(float) * s.n);
    if (s.p->bf16.size() > 0) cuda::to_bf16(s.p->value.data(), s.p->bf16.data(), s.n);
  }
  z.host_current = false;
  return norm;
}

// download_moments / upload_moments of a replicated parameter under ZeRO.
void GpuTransformer::zero_download_moments(size_t slot, Tensor& m, Tensor& v) {
  ZeroShard& z = *zero_;
  if (!z.host_current) {  // collective: every rank's shard of both moments
    z.m_host.resize(size_t(z.shard * z.device->size()));
    z.v_host.resize(z.m_host.size());
    for (auto [shard, host] : {std::make_pair(&z.m, &z.m_host), std::make_pair(&z.v, &z.v_host)}) {
      z.device->all_gather(shard->data(), z.flat.data(), z.shard);
      cuda::copy_to_host(host->data(), z.flat.data(), sizeof(float) * host->size());
    }
    z.host_current = true;
  }
  const auto& s = z.slots[slot];
  MOE_CHECK(m.numel() == s.n && v.numel() == s.n, "GPU model: moments of a parameter of " << s.n << " elements");
  std::copy(z.m_host.begin() + s.offset, z.m_host.begin() + s.offset + s.n, m.data());
  std::copy(z.v_host.begin() + s.offset, z.v_host.begin() + s.offset + s.n, v.data());
}

void GpuTransformer::zero_upload_moments(size_t slot, const Tensor& m, const Tensor& v) {
  ZeroShard& z = *zero_;
  const auto& s = z.slots[slot];
  MOE_CHECK(m.numel() == s.n && v.numel() == s.n, "GPU model: moments of a parameter of " << s.n << " elements");
  for (const auto& pc : z.pieces)
    if (pc.p == s.p) {
      cuda::copy_to_device(z.m.data() + pc.at, m.data() + pc.first, sizeof(float) * pc.count);
      cuda::copy_to_device(z.v.data() + pc.at, v.data() + pc.first, sizeof(float) * pc.count);
    }
  z.host_current = false;
}

}  // namespace moe::gpu
