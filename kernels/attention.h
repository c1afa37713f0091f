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
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd, Stream stream = nullptr);
// dq, dk, dv assigned (dk, dv through atomics over the query heads that share a kv head).
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
