// Rotary position embedding, half-split ("rotate_half") convention, in place.
// x: [B, S, nh, hd]; position = index in the sequence; freq_i = theta^(-2i/hd), i < hd/2:
//   x'_i = x_i cos - x_{i+hd/2} sin,  x'_{i+hd/2} = x_{i+hd/2} cos + x_i sin.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void rope_forward(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta);
// Gradient of rope_forward: rotates dx by the opposite angle, in place.
void rope_backward(float* dx, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta);

// ---- CUDA twin (kernels/cuda/rope.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void rope_forward(float* x, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, Stream stream = nullptr);
void rope_backward(float* dx, int64_t B, int64_t S, int64_t nh, int64_t hd, double theta, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
