// Order / Unorder stages of the MoE layer: a stable counting sort of the T*k token copies by expert,
// so each expert's rows are contiguous and the experts run as grouped GEMMs.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

// idx: [T, k] chosen experts. capacity == nullptr: dropless; else expert e keeps its first
// capacity[e] copies in token order (flattened [batch, seq] index) and the rest are dropped.
// Outputs: counts [E] (copies per expert before dropping), offsets [E + 1] (kept rows per expert,
// prefix sums), slot [T * k] (row of copy (t, j) in expert order, -1 when dropped),
// row_token [kept rows] (source token of each row). Returns the number of kept rows.
int64_t moe_order(const int32_t* idx, int64_t T, int64_t k, int64_t E, const int64_t* capacity, int64_t* counts,
                  int64_t* offsets, int64_t* slot, int32_t* row_token);

// xs[r, :] = x[row_token[r], :]   (x: [T, D], xs: [n, D])
void moe_gather(const float* x, const int32_t* row_token, int64_t n, int64_t D, float* xs);
// Gradient of moe_gather: dx[t, :] = sum over kept copies j of dxs[slot[t, j], :]  (assigned)
void moe_gather_backward(const float* dxs, const int64_t* slot, int64_t T, int64_t k, int64_t D, float* dx);

// y[t, :] = sum_j w[t, j] * ye[slot[t, j], :]  (assigned; dropped copies contribute 0)
void moe_unorder_forward(const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t D,
                         float* y);
// dye[slot[t, j], :] = w[t, j] * dy[t, :];  dw[t, j] = dy[t, :] . ye[slot[t, j], :]  (0 when dropped)
void moe_unorder_backward(const float* dy, const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k,
                          int64_t D, float* dye, float* dw);

// Chunk-major rows, for pipelining the expert stage in C chunks (the exchange of one chunk while
// another computes): expert e's n_e rows split into C near-equal chunks (chunk c: its rows
// floor(c n_e / C) .. floor((c + 1) n_e / C)), ordered (chunk, expert, row).
// chunk_offsets [C * E + 1]: first row of (chunk c, expert e) at index c * E + e. Host arrays.
void moe_chunk_offsets(const int64_t* offsets, int64_t E, int64_t C, int64_t* chunk_offsets);
// Moves expert-major rows (offsets [E + 1]) into that order, in place: row_token [offsets[E]]
// permuted, and every slot [n] renumbered to its row's new place (-1 stays -1).
void moe_to_chunk_major(const int64_t* offsets, const int64_t* chunk_offsets, int64_t E, int64_t C,
                        int32_t* row_token, int64_t* slot, int64_t n);

// ---- CUDA twin (kernels/cuda/moe_order.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
// idx, slot and row_token are device arrays; capacity, counts and offsets are host arrays (the
// grouped GEMMs need the offsets on the host). Synchronises the stream.
int64_t moe_order(const int32_t* idx, int64_t T, int64_t k, int64_t E, const int64_t* capacity, int64_t* counts,
                  int64_t* offsets, int64_t* slot, int32_t* row_token, Stream stream = nullptr);
void moe_gather(const float* x, const int32_t* row_token, int64_t n, int64_t D, float* xs, Stream stream = nullptr);
void moe_gather_backward(const float* dxs, const int64_t* slot, int64_t T, int64_t k, int64_t D, float* dx,
                         Stream stream = nullptr);
void moe_unorder_forward(const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t D,
                         float* y, Stream stream = nullptr);
void moe_unorder_backward(const float* dy, const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k,
                          int64_t D, float* dye, float* dw, Stream stream = nullptr);
// offsets and chunk_offsets are host arrays; row_token and slot device arrays.
void moe_to_chunk_major(const int64_t* offsets, const int64_t* chunk_offsets, int64_t E, int64_t C,
                        int32_t* row_token, int64_t* slot, int64_t n, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
