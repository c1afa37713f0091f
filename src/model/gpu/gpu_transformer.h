// The transformer of SPEC section 1 on one GPU, fp32 or bf16: the same forward and backward as
// src/model/transformer.cpp, through the CUDA kernels (kernels/cuda/), with parameters, gradients
// and activations in device memory, under the CPU model's data, tensor and expert parallelism
// (docs/parallelism.md) over device communicators; every routing option of the CPU model,
// balancing losses of every lbl_scope and expert-bias updates included. Its tests run it against the CPU model
// (tests/cuda/test_cuda_model.cpp). Plain C++: only kernels/*.h and kernels/cuda/device.h are
// needed, no CUDA headers.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "kernels/cuda/device.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/gemm.h"
#include "model/params.h"
#include "model/transformer.h"
#include "parallel/communicator.h"

namespace moe::gpu {

// Tensor parallelism (Megatron, docs/parallelism.md): the tp group as a host communicator (counts,
// sums of squares) and a device communicator over the same ranks (activations and their
// gradients). Empty: one rank.
struct TensorParallel {
  Communicator* host = nullptr;
  Communicator* device = nullptr;
};

class GpuTransformer {
 public:
  // Copies every parameter and buffer of `host` (a Transformer's store for the same config) to
  // the current GPU; gradients start at zero. bf16 (train.precision: bf16): the matmuls of
  // attention and of the dense, expert and shared FFNs take bf16 inputs (bf16 copies of the weights,
  // refreshed by the optimizer; activations rounded as they enter a GEMM) with fp32 accumulation
  // and fp32 outputs, and so do attention's four matmuls and the LM head's; master weights,
  // gradients, AdamW state, norms, the router, attention's softmax, the LM head's softmax and the
  // losses stay fp32.
  // Under tensor parallelism (tp) the host store is this rank's (a Transformer built with that tp
  // group): attention heads, dense FFN columns / rows and vocabulary rows split as on the CPU; the
  // embedding output, attention and dense outputs, their input gradients and the LM head's softmax
  // statistics are summed over tp.device; each tp rank routes its T / tp tokens' slice through the
  // MoE layers, whose outputs and input gradients are all-gathered.
  GpuTransformer(const ModelConfig& cfg, ParamStore& host, bool bf16 = false, TensorParallel tp = {});
  ~GpuTransformer();

  // One micro-batch (host tokens / targets [B*S]): accumulates the gradient of
  // grad_scale * (ce + aux) into the device gradients; returns ce and aux as the CPU model does.
  // backward false (evaluation): the forward and the losses only; the gradients are left as they
  // are (pass grad_scale 0: the fused LM head still adds its part, scaled by it).
  MicroBatchLoss forward_backward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S,
                                  float grad_scale, bool backward = true);
  void zero_grad();
  // StepRunner's optimizer step on the GPU: the global gradient norm (all gradients in one
  // launch), the clipping coefficient min(1, grad_clip / norm) applied as AdamW reads the
  // gradients, AdamW (PyTorch semantics, decay on rank >= 2 tensors) over every tensor in one
  // launch. Returns the norm before clipping.
  double optimizer_step(const OptimConfig& o, double lr, double grad_clip);
  // Data parallelism: every gradient summed over `comm`'s ranks in place (a communicator whose
  // buffers are device memory: NCCL, or host-staged for ranks sharing a GPU; parallel/gpu/), one
  // collective per parameter in name order, the same on every rank. Blocking.
  void all_reduce_grads(Communicator& comm);
  // The same sums overlapped with the backward: while set, forward_backward starts the
  // sums of each layer's gradients (non-blocking; NCCL runs them on its own stream while the
  // backward of the layers below computes) as soon as that layer's backward is queued, and those
  // of the parameters outside the layers (embedding, final norm, LM head) at its end.
  // finish_grad_sync waits for them all. Set it for the last micro-batch of a step only: the
  // earlier ones still add to the gradients.
  // Expert gradients go over expert_comm (data parallelism alone: comm itself; expert
  // parallelism: the ranks holding the same experts, nullptr when none do). nullptr, nullptr: off.
  // Under tp, the weights that see only a tp rank's token slice (router, shared experts) go over
  // token_comm: every rank (under ZeRO: the tp group; ZeRO's reduce-scatter adds the dp part);
  // nullptr: over comm, as without tp.
  void set_grad_sync(Communicator* comm, Communicator* expert_comm, Communicator* token_comm = nullptr) {
    sync_comm_ = comm;
    sync_expert_comm_ = expert_comm;
    sync_token_comm_ = token_comm;
  }
  void finish_grad_sync();
  // Expert parallelism: the experts of every MoE layer split over ep_host's ranks (the host
  // store's expert parameters are this rank's shard, [E / ep, ...]); token rows travel to the ranks
  // holding their experts and back over ep_device (a device communicator over the same ranks),
  // their counts over ep_host (parallel/token_dispatcher.h, as the CPU MoeLayer); the global norm
  // sums the expert gradients over ep_host. `chunks` > 1 pipelines each layer's exchanges with its
  // experts in that many chunks (worth it where ep_device overlaps them: NCCL); 0 chooses the count,
  // 1 to kMaxEpChunks, at the first MoE forward from the cost model of parallel/chunk_cost_model.h on
  // times measured there (gpu_chunk_choice.cpp; the same on every ep rank). Before the first forward.
  static constexpr int kMaxEpChunks = 4;
  void set_expert_parallel(Communicator* ep_host, Communicator* ep_device, int chunks = 1);
  // The chunks each MoE layer's exchanges run in (0 before the first MoE forward under chunks 0).
  int ep_chunks() const { return ep_chunks_; }
  // AdamW state by parameter name (for checkpoints and resume): the moments m, v (fp32, the
  // parameter's shape) and the number of updates applied.
  // Under ZeRO (set_zero) collective over the dp ranks: every rank calls it for the same names in
  // the same order (the first replicated parameter gathers every shard).
  void download_moments(const std::string& name, Tensor& m, Tensor& v);
  void upload_moments(const std::string& name, const Tensor& m, const Tensor& v);
  int64_t optimizer_steps() const { return optimizer_steps_; }
  void set_optimizer_steps(int64_t n) { optimizer_steps_ = n; }
  // ZeRO-1 over the dp ranks (dp_host and dp_device span them; more than one): the AdamW moments of
  // the replicated (non-expert) parameters are split over them as one flat vector (gpu_zero1.cpp);
  // optimizer_step reduce-scatters those gradients into this rank's shard, updates it, and
  // all-gathers the weights. Their gradients are then not summed by set_grad_sync (pass nullptr as
  // its comm). Before the first optimizer step; the moments uploaded before are kept.
  void set_zero(Communicator* dp_host, Communicator* dp_device);
  // Data parallelism: the host communicator over whose ranks a step's micro-batches are spread (the
  // dp group; nullptr: this rank alone). Each training micro-batch's expert counts are summed over
  // it (lbl_scope global, expert-bias updates and the loads below see the global batch), as
  // MoeLayer does over its token group.
  void set_token_group(Communicator* group) { token_group_ = group; }
  // Tokens routed to each expert (copies before capacity dropping) in this step's training
  // micro-batches, summed over the token group, per MoE layer: Transformer::expert_loads.
  std::vector<std::pair<int, std::vector<int64_t>>> expert_loads() const;
  // After the optimizer step (Transformer::end_step): the expert-bias update from the step's loads
  // (model.moe.router.bias_update_rate > 0), then the step's counts reset.
  void end_step();
  // Device gradients / values (parameters and buffers) -> the host store (assigned), by name.
  void download_grads(ParamStore& host) const;
  void download_values(ParamStore& host) const;
  // Phase timing: each phase (the profiler's names: attention_fwd, experts_bwd, ...) waits for the
  // device at both ends, so Profiler::take() gives each phase's GPU time. Slows a step down; for
  // the breakdown of moe-gpu-bench only.
  void set_phase_timing(bool on) { phase_timing_ = on; }
  // How the experts' grouped GEMMs run, measured at the first MoE forward (kernels/gemm.h).
  const cuda::GroupedChoice& grouped_choice() const { return grouped_; }
  // Which attention kernels bf16 mode runs (blocked or fused), measured at the first forward.
  const cuda::AttentionChoice& attention_choice() const { return attention_; }

 private:
  struct Block;
  struct DevParam {
    cuda::DeviceArray<float> value, grad, m, v;  // m, v: AdamW moments
    cuda::DeviceArray<uint16_t> bf16;            // bf16 copy of a matmul weight (bf16 mode)
    bool decay = false;
    bool expert = false;        // an expert weight (split over the ep ranks)
    bool tp_split = false;      // split over the tp ranks (heads, FFN columns / rows, vocabulary)
    bool token_sliced = false;  // sees only a tp rank's token slice (router, shared experts)
  };
  // Row groups of a grouped expert GEMM (kernels/gemm.h): `groups` groups at host offsets
  // [groups + 1], group g served by weight g % weights (no ep: one group per expert; ep: one per
  // (source rank, local expert)).
  struct Groups {
    const int64_t* offsets;
    int64_t groups, weights;
  };
  float* w(const std::string& name);   // device value of a parameter
  float* g(const std::string& name);   // device gradient
  const void* wb(const std::string& name);  // its bf16 copy
  const float* buffer(const std::string& name) const;  // device copy of a buffer, or nullptr
  const void* rounded(const float* x, int64_t n, cuda::DeviceArray<uint16_t>& scratch);  // x as bf16

  // Matmuls with weight W [out, in] by name, fp32 or bf16 inputs (fp32 accumulation and output):
  // y = x W^T;  dx = dy W (+ beta dx);  dW += dy^T x.
  // An activation as a GEMM operand: fp32, and in bf16 mode also rounded to bf16 (into a scratch
  // buffer, valid until that buffer's next use), so that one rounding serves several GEMMs.
  struct Operand {
    const float* f32;
    const void* b16;  // nullptr in fp32 mode
  };
  Operand operand(const float* x, int64_t n, cuda::DeviceArray<uint16_t>& scratch);
  void linear_fwd(const Operand& x, int64_t T, int64_t in, const std::string& W, int64_t out, float* y);
  void linear_dx(const Operand& dy, int64_t T, int64_t out, const std::string& W, int64_t in, float beta, float* dx);
  void linear_dw(const Operand& dy, int64_t T, int64_t out, const Operand& x, int64_t in, const std::string& W);
  // The same with the operands rounded here (x and dy into the two scratch buffers).
  void linear_fwd(const float* x, int64_t T, int64_t in, const std::string& W, int64_t out, float* y);
  void linear_dx(const float* dy, int64_t T, int64_t out, const std::string& W, int64_t in, float beta, float* dx);
  void linear_dw(const float* dy, int64_t T, int64_t out, const float* x, int64_t in, const std::string& W);
  // The experts' grouped forms (kernels/gemm.h), W [E_local, out, in] by name.
  void grouped_fwd(const Groups& G, const float* x, int64_t in, const std::string& W, int64_t out, float* y);
  void grouped_dx(const Groups& G, const float* dy, int64_t out, const std::string& W, int64_t in, float beta,
                  float* dx);
  void grouped_dw(const Groups& G, const float* dy, int64_t out, const float* x, int64_t in, const std::string& W);
  // bf16 mode's expert GEMMs on bf16 operands (x16, dy16: bf16 rows): y / dx fp32, or bf16 when asked.
  void experts_fwd_bf16(const Groups& G, const void* x16, int64_t in, const std::string& W, int64_t out, void* y,
                        bool y_bf16);
  void experts_dx_bf16(const Groups& G, const void* dy16, int64_t out, const std::string& W, int64_t in, float beta,
                       void* dx, bool dx_bf16);
  void experts_dw_bf16(const Groups& G, const void* dy16, int64_t out, const void* x16, int64_t in,
                       const std::string& W);
  // The MoE layer's expert stage on block b's ordered rows (dispatch, the grouped SwiGLU experts,
  // combine) and its backward: gpu_experts.cpp.
  void experts_forward(Block& b);
  void expert_rows_forward(Block& b, const Groups& G, int64_t first, int64_t R, float* y);
  void expert_rows_backward(Block& b, const Groups& G, int64_t first, int64_t R, const float* dye, const void* dye16,
                            float* dx);
  void experts_backward(Block& b, const float* dy);  // dy: the layer output's gradient
  // Expert parallelism with chunks 0: the chunk count for `rows` token copies per rank, measured and
  // chosen (collective over the ep group; gpu_chunk_choice.cpp), block b's weights timed.
  int choose_ep_chunks(const Block& b, int64_t rows);
  void make_dispatchers();  // ep_chunks_ TokenDispatchers per MoE block
  // The whole MoE layer on block b's a2 (MoeLayer::forward / backward: gate, order, experts,
  // balancing losses, shared experts; under tp on this rank's token slice, then all-gathered) into
  // b.tmp; the backward from the output gradient dy [T, D] into b.tmp (gpu_moe_layer.cpp).
  void moe_forward(Block& b, bool backward, float grad_scale, MicroBatchLoss& loss);
  void moe_backward(Block& b, const float* dy);
  // Sum over the tp ranks in place (a no-op without tp), as the "tp_allreduce" phase.
  void tp_all_reduce(float* x, int64_t n);
  // SwiGLU FFN (w1, w3, w2 under `prefix`): activations g, u, h [T, F] kept for the backward.
  void swiglu_forward(const std::string& prefix, const float* x, int64_t T, int64_t D, int64_t F, float* gg, float* uu,
                      float* hh, float* y);
  void swiglu_backward(const std::string& prefix, const float* x, int64_t T, int64_t D, int64_t F, float* gg,
                       float* uu, float* hh, const float* dy, float* dx, bool accumulate);

  ModelConfig cfg_;
  bool bf16_ = false;
  bool phase_timing_ = false;
  cuda::GroupedChoice grouped_;
  bool grouped_chosen_ = false;
  cuda::AttentionChoice attention_;  // fp32 mode: always blocked
  bool attention_chosen_ = false;
  int64_t E_ = 0;
  TensorParallel tp_;
  int64_t P_ = 1;                                // tp ranks
  int64_t vocab_lo_ = 0, V_local_ = 0;           // this rank's vocabulary rows [vocab_lo_, vocab_lo_ + V_local_)
  cuda::DeviceArray<uint16_t> bf16_a_, bf16_b_;  // bf16 GEMM inputs, grown as needed
  struct ZeroShard;  // ZeRO-1 state (gpu_block.h), used by gpu_zero1.cpp
  std::unique_ptr<ZeroShard> zero_;
  double zero_step(const OptimConfig& o, double lr, double grad_clip);  // optimizer_step under ZeRO
  // Clipping to grad_clip from the global norm, then AdamW over `tensors` in one launch; returns norm.
  double clip_and_update(const OptimConfig& o, double lr, double grad_clip, double norm,
                         std::vector<cuda::AdamWTensor>& tensors);
  void zero_download_moments(size_t slot, Tensor& m, Tensor& v);
  void zero_upload_moments(size_t slot, const Tensor& m, const Tensor& v);
  std::map<std::string, DevParam> params_;
  std::map<std::string, cuda::DeviceArray<float>> buffers_;
  std::vector<std::unique_ptr<Block>> blocks_;
  int64_t optimizer_steps_ = 0;
  // overlapped gradient sums (set_grad_sync): parameters by layer (-1: outside the layers)
  void start_grad_sync(int layer);
  // MoeLayer::balancing_losses for block b, in two parts: the router outputs it needs copied to the
  // host (after the order stage), then, on the host while the experts run, lbl and z added to
  // loss.aux and their gradients (times grad_scale) left in b.dprobs / b.dlse; counts: this
  // micro-batch's copies per expert.
  void fetch_balancing_inputs(Block& b);
  void balancing_losses(Block& b, const std::vector<int64_t>& counts, int64_t B, int64_t S, float grad_scale,
                        MicroBatchLoss& loss);
  Communicator* token_group_ = nullptr;
  Communicator* ep_host_ = nullptr;  // expert parallelism: the ep group (counts, the norm)
  Communicator* ep_device_ = nullptr;  // ... and over the same ranks for the rows
  int ep_chunks_ = 0;
  Communicator* sync_comm_ = nullptr;
  Communicator* sync_expert_comm_ = nullptr;
  Communicator* sync_token_comm_ = nullptr;
  std::map<int, std::vector<DevParam*>> sync_groups_;
  std::vector<std::unique_ptr<PendingOp>> pending_sync_;
  // activations of the last micro-batch
  cuda::DeviceArray<int32_t> tokens_, targets_;
  std::vector<cuda::DeviceArray<float>> acts_;  // residual stream, L + 1 entries of [T, D]
  cuda::DeviceArray<float> hf_, rstd_f_, dh_, dtmp_, loss_, lm_scratch_, lm_local_max_;
  cuda::DeviceArray<uint16_t> lm_scratch_bf16_;
  // The LM head's vocabulary chunk for T tokens and Vl rows: all Vl when their logits' scratch
  // takes at most a quarter of the free device memory (the backward pass then reuses the forward's
  // logits: three GEMMs instead of four), else 8192; chosen once per T.
  int64_t lm_head_chunk(int64_t T, int64_t Vl);
  int64_t lm_chunk_ = 0, lm_chunk_tokens_ = 0;
};

}  // namespace moe::gpu
