// Element-wise helpers over flat float arrays.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void add_inplace(float* y, const float* x, int64_t n);  // y += x
void add(const float* a, const float* b, float* out, int64_t n);  // out = a + b (out may alias a or b)
void scale_inplace(float* x, int64_t n, float s);       // x *= s
// Sum of squares in double, summed in fixed blocks then in order: the same result for any thread count.
double sum_squares(const float* x, int64_t n);

// ---- CUDA twin (kernels/cuda/elementwise.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void add_inplace(float* y, const float* x, int64_t n, Stream stream = nullptr);
void add(const float* a, const float* b, float* out, int64_t n, Stream stream = nullptr);
void scale_inplace(float* x, int64_t n, float s, Stream stream = nullptr);
double sum_squares(const float* x, int64_t n, Stream stream = nullptr);
// The global-norm reduction: sum of squares of `count` device tensors in one launch (block partials
// in double, summed on the host in block order: deterministic).
double sum_squares_many(const float* const* tensors, const int64_t* sizes, int count, Stream stream = nullptr);
// y (__nv_bfloat16 [n]) = x rounded to bf16, nearest even (bf16 GEMM inputs).
void to_bf16(const float* x, void* y, int64_t n, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
