// GpuTransformer's internals shared by its source files (gpu_transformer.cpp: forward and
// backward; gpu_experts.cpp: the expert stage; gpu_moe_stats.cpp: the balancing losses and the
// per-step MoE statistics; gpu_zero1.cpp: ZeRO-1): the state of one transformer block on the
// device, the ZeRO-1 shard, and the phase scope of the GPU timing. Not for other users.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/profiler.h"
#include "kernels/cuda/device.h"
#include "model/gpu/gpu_transformer.h"
#include "parallel/token_dispatcher.h"

namespace moe::gpu {

using cuda::DeviceArray;

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

// A profiler phase (core/profiler.h) that, with phase timing on, waits for the device at both ends
// so that its wall time is the GPU time of the work launched inside it.
class GpuPhase {
 public:
  GpuPhase(const char* name, bool sync) : sync_(wait_if(sync)), scope_(name) {}
  ~GpuPhase() { wait_if(sync_); }  // before scope_ closes

 private:
  static bool wait_if(bool sync) {
    if (sync) cuda::synchronize();
    return sync;
  }
  bool sync_;
  ScopedPhase scope_;
};

struct GpuTransformer::Block {
  std::string prefix;
  bool moe = false;
  const float* x = nullptr;  // block input (an entry of acts_)
  int64_t B = 0, S = 0, T = 0;
  // The MoE layer's tokens: this rank's slice [t0, t0 + Tm) of the T (all of them without tp); its
  // input rows (of a2) and its output rows (of tmp, or of slice_out under tp, all-gathered into tmp).
  int64_t Tm = 0, t0 = 0;
  const float* moe_in = nullptr;
  float* moe_out = nullptr;
  DeviceArray<float> slice_out;
  DeviceArray<float> a1, rstd1, q, k, v, o, lse, mid, a2, rstd2, tmp, dtmp, dq, dk, dv, dout_heads;
  FfnActs dense, shared, experts;
  // MoE state (MoeLayer): router outputs, order, expert rows
  DeviceArray<float> logits, scores, probs, rlse, weights, dweights, dlogits, dprobs, dlse, xs, ye, shared_out;
  DeviceArray<uint16_t> xs16, g16, u16, h16;  // bf16 mode: the experts' rows and activations in bf16
  DeviceArray<uint16_t> send16;                // bf16 mode under ep: this rank's rows before the exchange
  DeviceArray<int32_t> idx, row_token;
  DeviceArray<int64_t> slot;
  std::vector<int64_t> offsets;
  // expert parallelism: rows to the experts' ranks and back, one dispatcher per pipelined chunk
  std::vector<std::unique_ptr<TokenDispatcher>> dispatchers;
  std::vector<int64_t> chunk_offsets;  // [chunks * E + 1]: this rank's rows of (chunk, expert)
  std::vector<int64_t> local_start;    // [chunks + 1]: first local row of each chunk
  DeviceArray<float> xl, yl;           // expert parallelism: the rows this rank's experts serve
  int64_t local_rows = 0;              // rows the experts ran on (rows, or xl's under ep)
  std::vector<float> probs_host, lse_host;  // router outputs the balancing losses read on the host
  std::vector<int32_t> idx_host;
  std::vector<int64_t> step_counts;  // copies per expert in this step, summed over the token group
  int64_t step_tokens = 0;           // tokens behind step_counts
  int64_t rows = 0;
  bool has_dprobs = false, has_dlse = false;
};

// ZeRO-1 state (gpu_zero1.cpp): the replicated parameters as one flat vector of `total` floats in
// name order, padded to ranks * shard; this rank owns [lo, lo + shard) and its AdamW moments.
struct GpuTransformer::ZeroShard {
  Communicator* host = nullptr;    // dp, host buffers (sums of squares)
  Communicator* device = nullptr;  // dp, device buffers
  struct Slot {
    DevParam* p;
    int64_t offset, n;  // where the parameter starts in the flat vector, and its size
  };
  struct Piece {  // the part of one parameter this rank owns
    DevParam* p;
    int64_t first, count, at;  // elements [first, first + count) of p, at `at` in the shard
  };
  std::vector<Slot> slots;
  std::map<std::string, size_t> slot_of;  // by parameter name
  std::vector<Piece> pieces;
  int64_t total = 0, shard = 0, lo = 0;
  DeviceArray<float> flat, shard_grad, shard_value, m, v;
  std::vector<float> m_host, v_host;  // every rank's moments, gathered for a checkpoint
  bool host_current = false;
};

}  // namespace moe::gpu
