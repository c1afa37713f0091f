// Element-wise helpers over flat float arrays.
#pragma once
#include <cstdint>

namespace moe {

void add_inplace(float* y, const float* x, int64_t n);  // y += x
void add(const float* a, const float* b, float* out, int64_t n);  // out = a + b (out may alias a or b)
void scale_inplace(float* x, int64_t n, float s);       // x *= s
// Sum of squares in double, summed in fixed blocks then in order: the same result for any thread count.
double sum_squares(const float* x, int64_t n);

}  // namespace moe
