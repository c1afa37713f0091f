// SwiGLU activation, element-wise: h = silu(g) * u.  g, u, h: [n].
#pragma once
#include <cstdint>

namespace moe {

void swiglu_forward(const float* g, const float* u, float* h, int64_t n);
// dg = dh * u * silu'(g), du = dh * silu(g); both assigned.
void swiglu_backward(const float* g, const float* u, const float* dh, float* dg, float* du, int64_t n);

}  // namespace moe
