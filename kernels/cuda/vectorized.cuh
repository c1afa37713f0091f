// Wide memory access for the memory-bound kernels (element-wise, row copies): one float4 (16 bytes)
// per thread and instruction where the pointers and sizes allow it, plain floats otherwise. The
// kernels are templates over the element type V (float or float4), launched with V = float4 when
// vector4_ok() holds, so both paths share one source.
#pragma once
#include <cstdint>
#include <vector_functions.h>
#include <vector_types.h>

namespace moe::cuda {

inline bool aligned_to(const void* p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// n floats at each pointer can be read / written as n / 4 float4.
inline bool vector4_ok(int64_t n, const void* a, const void* b = nullptr, const void* c = nullptr) {
  return n % 4 == 0 && aligned_to(a, 16) && (!b || aligned_to(b, 16)) && (!c || aligned_to(c, 16));
}

template <class V>
__host__ __device__ __forceinline__ V zero_of();
template <>
__host__ __device__ __forceinline__ float zero_of<float>() {
  return 0.0f;
}
template <>
__host__ __device__ __forceinline__ float4 zero_of<float4>() {
  return make_float4(0.0f, 0.0f, 0.0f, 0.0f);
}

// acc + w * x, element by element.
__host__ __device__ __forceinline__ float axpy(float w, float x, float acc) { return acc + w * x; }
__host__ __device__ __forceinline__ float4 axpy(float w, float4 x, float4 acc) {
  return make_float4(acc.x + w * x.x, acc.y + w * x.y, acc.z + w * x.z, acc.w + w * x.w);
}
__host__ __device__ __forceinline__ float4 operator+(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}
__host__ __device__ __forceinline__ float4 operator*(float s, float4 a) {
  return make_float4(s * a.x, s * a.y, s * a.z, s * a.w);
}

// Grid for one block per row (rows past the grid's size are taken in a grid-stride loop).
inline unsigned row_blocks(int64_t rows) {
  return unsigned(rows < 1 ? 1 : (rows > 65535 * 32 ? 65535 * 32 : rows));
}

}  // namespace moe::cuda
