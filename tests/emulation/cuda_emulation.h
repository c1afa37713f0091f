// CUDA kernels on the CPU, for CI machines without a GPU: every kernel of kernels/cuda/ (the fused
// attention on warp_mma.cuh included) compiles as plain C++ and runs here, so their indexing,
// masking, reductions and shared-memory staging are checked against the CPU twins in every CI run.
// With the CPU CUDA runtime and cuBLAS of cudart_emulation.cpp / cublas_emulation.cpp, the whole
// GPU model and trainer run too (docs/testing.md). A GPU run (tests/cuda/) remains the check of the
// real thing: timing, true concurrency between streams (deferring streams only see work late, never
// early) and the compiler's code are not emulated.
//
// How: include the CUDA headers, this header, then the kernel source (emulated/*.cpp wrappers,
// tests/CMakeLists.txt). MOE_LAUNCH (kernels/cuda/cuda_check.h) becomes emu::launcher. The CUDA qualifiers become plain C++;
// threadIdx / blockIdx / gridDim read the emulator's state; launch() runs the blocks one after
// another and the threads of a block as fibers (ucontext) on one OS thread, switched only at
// __syncthreads and warp collectives, in a fixed order (runs are deterministic). The schedule is
// adversarial: the first ready thread runs, so one warp gets as far ahead of the others as the
// barriers allow. The PTX primitives of warp_mma_ptx.cuh are reimplemented from the PTX ISA:
//   - mma_bf16: the m16n8k16 fragment layouts, products of bf16 values summed in fp32;
//   - ldsm_x4 / ldsm_x4_trans: ldmatrix .x4 (lane l addresses row l % 8 of matrix l / 8);
//   - cp_async16 / cp_async4: copies (or zero fill) that land at either end of the window the PTX
//     allows: at the cp_async_wait that retires their group, so that a read before the wait, or
//     before the __syncthreads after it, sees stale data; or at issue, so that a copy into a buffer
//     other warps still read (a missing __syncthreads before the refill) overwrites it.
// Kernel tests run under several schedules (Schedule: copy timing, which warp leads).
// Each primitive checks what a GPU would fault on or silently corrupt: shared addresses inside
// the launch's dynamic shared memory and aligned (16 bytes for ldmatrix rows and cp.async), every
// lane of a warp in the same collective, and no deadlock (a barrier some thread never reaches).
// launch() throws with the first such finding.
#pragma once
#include <cuda_bf16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <cmath>
#include <cstdint>
#include <functional>

#define MOE_CUDA_EMULATION 1

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
#undef __shared__
#define __shared__ static  // one array for all the fibers of a block (blocks run one at a time)
#undef __align__
#define __align__(n)
#define __launch_bounds__(...)

namespace moe::emu {

struct Index3 {
  unsigned x = 0, y = 0, z = 0;
};

const Index3& thread_index();  // of the fiber running now
extern Index3 block_index, grid_dim, block_dim;

struct Schedule {
  bool copies_at_issue = false;  // cp.async data lands at issue (else at the wait that retires it)
  bool reverse_warps = false;    // the last warp leads (else warp 0)
};
void set_schedule(const Schedule& schedule);  // the default Schedule{} unless set

void syncthreads();
float shfl_xor(float v, int lane_mask);

// Runs kernel() on every thread of grid x threads (threads a multiple of 32, blocks one after
// another); the kernel's dynamic shared memory is [smem, smem + smem_bytes).
void launch(Index3 grid, unsigned threads, void* smem, size_t smem_bytes, const std::function<void()>& kernel);

// The dynamic shared memory of the launch running now (MOE_DYNAMIC_SMEM), and the buffer that
// launches through MOE_LAUNCH use (kMaxDynamicSmem bytes, 128-byte aligned).
unsigned char* dynamic_smem();
constexpr size_t kMaxDynamicSmem = 227 * 1024;  // an H100's per-block maximum
unsigned char* shared_buffer();

// MOE_LAUNCH(grid, threads, smem_bytes, stream, kernel)(args...): the kernel on every thread of
// the grid, with copies of the arguments as a real launch passes them, at once (streams are not
// emulated: every launch completes before the next call). One-dimensional blocks.
void check_launch(dim3 block, size_t smem_bytes);
template <class Stream, class Kernel>
auto launcher(dim3 grid, dim3 block, size_t smem_bytes, Stream /*stream*/, Kernel kernel) {
  return [=](auto... args) {
    check_launch(block, smem_bytes);
    launch(Index3{grid.x, grid.y, grid.z}, block.x, shared_buffer(), smem_bytes, [&] { kernel(args...); });
  };
}

}  // namespace moe::emu

#define MOE_DYNAMIC_SMEM(name) unsigned char* const name = ::moe::emu::dynamic_smem()

#define threadIdx (::moe::emu::thread_index())
#define blockIdx (::moe::emu::block_index)
#define gridDim (::moe::emu::grid_dim)
#define blockDim (::moe::emu::block_dim)

inline void __syncthreads() { moe::emu::syncthreads(); }
inline float __shfl_xor_sync(unsigned /*mask: the whole warp*/, float v, int lane_mask) {
  return moe::emu::shfl_xor(v, lane_mask);
}
inline int64_t min(int64_t a, int64_t b) { return a < b ? a : b; }
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
// Fibers switch only at barriers and warp collectives, so a plain update is atomic here.
inline float atomicAdd(float* p, float v) {
  const float old = *p;
  *p = old + v;
  return old;
}

namespace moe::cuda::mma {

using bf16 = __nv_bfloat16;

void cp_async16(void* dst, const void* src, bool valid);
void cp_async4(void* dst, const void* src, bool valid);
void cp_async_commit();
void cp_async_wait_groups(int n);
template <int N>
void cp_async_wait() {
  cp_async_wait_groups(N);
}
void ldsm_x4(uint32_t (&r)[4], const bf16* p);
void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p);
void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

}  // namespace moe::cuda::mma
