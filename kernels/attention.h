// Causal grouped-query attention for one micro-batch, flash-attention style: the S x S matrix of
// probabilities is never stored. q, out: [B, S, H, hd]; k, v: [B, S, Hkv, hd]; head h uses kv head
// h / (H / Hkv). lse: [B, H, S], the logsumexp of each query row's scaled scores, saved for the
// backward, which recomputes the probabilities from it. CPU: 64-row query blocks through GEMMs
// (the masked upper triangle is never computed), O(64 S) scratch per thread.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void attention_forward(const float* q, const float* k, const float* v, float* out, float* lse, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd);
// dq, dk, dv are assigned. Parallel over (batch, kv head), so shared kv heads never race.
void attention_backward(const float* q, const float* k, const float* v, const float* out, const float* lse,
                        const float* dout, float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H,
                        int64_t Hkv, int64_t hd);

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
