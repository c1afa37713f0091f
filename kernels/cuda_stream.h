// The CUDA stream type, named without CUDA headers, for the CUDA twins declared in kernels/<op>.h
// (defined in kernels/cuda/*.cu, compiled only when the build has CUDA: MOE_WITH_CUDA).
#pragma once

struct CUstream_st;

namespace moe::cuda {
using Stream = CUstream_st*;  // cudaStream_t; nullptr is the default stream
}  // namespace moe::cuda
