// Causal grouped-query attention for one micro-batch, flash-attention style: the S x S matrix of
// probabilities is never stored. q, out: [B, S, H, hd]; k, v: [B, S, Hkv, hd]; head h uses kv head
// h / (H / Hkv). lse: [B, H, S], the logsumexp of each query row's scaled scores, saved for the
// backward, which recomputes the probabilities from it. CPU: 64-row query blocks through GEMMs
// (the masked upper triangle is never computed), O(64 S) scratch per thread. For short sequences
// the caller may pass probs_cache ([B, H, S, S]): the forward keeps the probabilities there and the
// backward reads them instead of recomputing (the same results up to rounding, 3-6% faster at S 256).
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd, float* probs_cache = nullptr);
// dq, dk, dv are assigned. Parallel over (batch, kv head), so shared kv heads never race.
// probs_cache: the one the forward filled, or nullptr.
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd, const float* probs_cache = nullptr);

// ---- CUDA twin (kernels/cuda/attention.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. bf16_matmuls: bf16 operands (q, k, v, dout
// and the probabilities rounded), fp32 accumulation, softmax, lse and outputs. Two implementations:
//   kBlocked: query blocks of 256 rows, each matmul one cuBLAS strided-batched GEMM over all heads,
//             the softmax in kernels of its own; [B*H, 256, S] score tiles in device memory.
//   kFused:   FlashAttention-2 kernels on tensor cores (mma.sync, kernels/cuda/flash_attention.cuh):
//             scores and probabilities in registers, K / V tiles double-buffered in shared memory;
//             bf16_matmuls and head_dim 32, 64 or 128 only. Tested against the CPU on the CPU
//             through the CUDA emulation (tests/emulation/) and on a GPU (tests/cuda/). ----
namespace cuda {
enum class AttentionKernel { kBlocked, kFused };
void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd, bool bf16_matmuls = false,
                       AttentionKernel kernel = AttentionKernel::kBlocked, Stream stream = nullptr);
// dq, dk, dv assigned.
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd, bool bf16_matmuls = false,
                        AttentionKernel kernel = AttentionKernel::kBlocked, Stream stream = nullptr);
// The faster implementation for bf16 attention at this shape, for the forward and for the backward
// apart (both take and save the same things: out and the natural-log logsumexp, so either backward
// follows either forward), measured on random scratch inputs (median of 3 after a warm-up).
// kBlocked where the fused kernels do not take the head dim, and, per direction, where their
// results (out and lse; dq, dk and dv) on the same inputs differ from the blocked path's by more
// than bf16 rounding explains (relative L2 error over 2e-2; a safety net for a GPU on which the
// fused kernels misbehave). Milliseconds of each and the largest relative errors kept for reports
// (fused times 0 when not measured).
struct AttentionChoice {
  AttentionKernel forward = AttentionKernel::kBlocked, backward = AttentionKernel::kBlocked;
  double blocked_fwd_ms = 0, blocked_bwd_ms = 0, fused_fwd_ms = 0, fused_bwd_ms = 0;
  double fused_fwd_rel_error = 0, fused_bwd_rel_error = 0;  // fused against blocked, worst output
};
AttentionChoice choose_attention_kernel(int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t hd);
}  // namespace cuda

}  // namespace moe
