// Token embedding lookup. out[t, :] = table[tokens[t], :]; a negative id (a token of another
// vocabulary shard) gives a zero row and no gradient.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t T, int64_t D);
// dtable[tokens[t], :] += dout[t, :]  (accumulates; repeated tokens sum)
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D);

// ---- CUDA twin (kernels/cuda/embedding.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void embedding_forward(const int32_t* tokens, const float* table, float* out, int64_t T, int64_t D,
                       Stream stream = nullptr);
// Accumulates with atomics: repeated tokens sum in no fixed order.
void embedding_backward(const int32_t* tokens, const float* dout, float* dtable, int64_t T, int64_t D,
                        Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
