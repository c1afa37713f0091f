// Causal grouped-query attention for one micro-batch.
// q, out: [B, S, H, hd]; k, v: [B, S, Hkv, hd]; head h uses kv head h / (H / Hkv).
// probs: [B, H, S, S] softmax(q k^T / sqrt(hd) + causal mask), saved for the backward
// (entries above the diagonal are written as 0).
#pragma once
#include <cstdint>

namespace moe {

void attention_forward(const float* q, const float* k, const float* v, float* out, float* probs, int64_t B, int64_t S,
                       int64_t H, int64_t Hkv, int64_t hd);
// dq, dk, dv are assigned. Parallel over (batch, kv head), so shared kv heads never race.
void attention_backward(const float* q, const float* k, const float* v, const float* probs, const float* dout,
                        float* dq, float* dk, float* dv, int64_t B, int64_t S, int64_t H, int64_t Hkv, int64_t hd);

}  // namespace moe
