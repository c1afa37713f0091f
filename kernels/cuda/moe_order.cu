// Order / Unorder of the MoE layer on the GPU (twin of kernels/cpu/moe_order.cpp).
// moe_order is a stable counting sort: one block per expert ranks that expert's copies in token
// order with a block-wide prefix sum, the host turns the counts into capacity-limited offsets (it
// needs them anyway for the grouped GEMM sizes), and a second kernel places every copy.
#include <vector>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/vectorized.cuh"
#include "kernels/moe_order.h"

namespace moe::cuda {
namespace {

__global__ void rank_copies(const int32_t* idx, int64_t n, int64_t* rank_in_expert, int64_t* counts) {
  __shared__ int64_t scan[kThreads];
  const int32_t e = int32_t(blockIdx.x);
  int64_t running = 0;
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t c = base + threadIdx.x;
    const int64_t flag = c < n && idx[c] == e ? 1 : 0;
    scan[threadIdx.x] = flag;
    __syncthreads();
    for (int stride = 1; stride < int(blockDim.x); stride *= 2) {  // inclusive Hillis-Steele scan
      const int64_t add = int(threadIdx.x) >= stride ? scan[threadIdx.x - stride] : 0;
      __syncthreads();
      scan[threadIdx.x] += add;
      __syncthreads();
    }
    if (flag) rank_in_expert[c] = running + scan[threadIdx.x] - 1;
    running += scan[blockDim.x - 1];
    __syncthreads();
  }
  if (threadIdx.x == 0) counts[e] = running;
}

__global__ void place_copies(const int32_t* idx, const int64_t* rank_in_expert, const int64_t* offsets,
                             const int64_t* kept, int64_t n, int64_t k, int64_t* slot, int32_t* row_token) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= n) return;
  const int32_t e = idx[c];
  const int64_t r = rank_in_expert[c];
  if (r < kept[e]) {
    slot[c] = offsets[e] + r;
    row_token[offsets[e] + r] = int32_t(c / k);
  } else {
    slot[c] = -1;
  }
}

// xs row r = x row row_token[r]: one block per row, V = float4 where D allows it.
template <class V>
__global__ void gather_rows(const V* x, const int32_t* row_token, int64_t n, int64_t Dv, V* xs) {
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const V* src = x + int64_t(row_token[r]) * Dv;
    for (int64_t c = threadIdx.x; c < Dv; c += blockDim.x) xs[r * Dv + c] = src[c];
  }
}

// out[t, :] = sum over kept copies j of w[t, j] * rows[slot[t, j], :] (w == nullptr: weight 1),
// one block per token. The unorder forward, and (with w == nullptr) the backward of the gather.
template <class V>
__global__ void sum_copies(const V* rows, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t Dv,
                           V* out) {
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x)
    for (int64_t c = threadIdx.x; c < Dv; c += blockDim.x) {
      V s = zero_of<V>();
      for (int64_t j = 0; j < k; ++j) {
        const int64_t r = slot[t * k + j];
        if (r >= 0) s = axpy(w ? w[t * k + j] : 1.0f, rows[r * Dv + c], s);
      }
      out[t * Dv + c] = s;
    }
}

template <class V>
void launch_gather(const float* x, const int32_t* row_token, int64_t n, int64_t D, float* xs, Stream stream) {
  MOE_LAUNCH(row_blocks(n), kThreads, 0, stream, gather_rows<V>)
  (reinterpret_cast<const V*>(x), row_token, n, D * int64_t(sizeof(float)) / int64_t(sizeof(V)),
   reinterpret_cast<V*>(xs));
  MOE_CUDA_LAUNCHED();
}

template <class V>
void launch_sum_copies(const float* rows, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t D,
                       float* out, Stream stream) {
  const int64_t Dv = D * int64_t(sizeof(float)) / int64_t(sizeof(V));
  MOE_LAUNCH(row_blocks(T), kThreads, 0, stream, sum_copies<V>)
  (reinterpret_cast<const V*>(rows), slot, w, T, k, Dv, reinterpret_cast<V*>(out));
  MOE_CUDA_LAUNCHED();
}

void sum_copies_any(const float* rows, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t D,
                    float* out, Stream stream) {
  if (vector4_ok(D, rows, out))
    launch_sum_copies<float4>(rows, slot, w, T, k, D, out, stream);
  else
    launch_sum_copies<float>(rows, slot, w, T, k, D, out, stream);
}

// place[r] = the chunk-major position of expert-major row r (kernels/moe_order.h): its expert by
// binary search over offsets [E + 1], then its chunk among the expert's C splits.
__global__ void chunk_major_places(const int64_t* offsets, const int64_t* chunk_offsets, int64_t E, int64_t C,
                                   int64_t rows, int64_t* place) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x) {
    int64_t lo = 0, hi = E - 1;  // the expert e with offsets[e] <= r < offsets[e + 1] (non-empty)
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (offsets[mid] <= r)
        lo = mid;
      else
        hi = mid - 1;
    }
    const int64_t e = lo, ne = offsets[e + 1] - offsets[e], i = r - offsets[e];
    int64_t c = i * C / ne;  // then the exact chunk: ne c / C <= i < ne (c + 1) / C
    while (c + 1 < C && ne * (c + 1) / C <= i) ++c;
    while (c > 0 && ne * c / C > i) --c;
    place[r] = chunk_offsets[c * E + e] + i - ne * c / C;
  }
}

__global__ void scatter_tokens(const int32_t* row_token, const int64_t* place, int64_t rows, int32_t* moved) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows; r += int64_t(gridDim.x) * blockDim.x)
    moved[place[r]] = row_token[r];
}

__global__ void renumber_slots(const int64_t* place, int64_t n, int64_t* slot) {
  for (int64_t a = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; a < n; a += int64_t(gridDim.x) * blockDim.x)
    if (slot[a] >= 0) slot[a] = place[slot[a]];
}

// One block per copy (t, j): dye row = w dy row; dw = dy . ye row (block reduction).
__global__ void unorder_bwd(const float* dy, const float* ye, const int64_t* slot, const float* w, int64_t k,
                            int64_t D, float* dye, float* dw) {
  __shared__ float lane[kThreads];
  const int64_t c = blockIdx.x, t = c / k, r = slot[c];
  float dot = 0;
  if (r >= 0)
    for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
      const float g = dy[t * D + d], y = ye[r * D + d];  // read before writing: dye may alias ye
      dot += g * y;
      dye[r * D + d] = w[c] * g;
    }
  lane[threadIdx.x] = dot;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) lane[threadIdx.x] += lane[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) dw[c] = lane[0];
}

}  // namespace

int64_t moe_order(const int32_t* idx, int64_t T, int64_t k, int64_t E, const int64_t* capacity, int64_t* counts,
                  int64_t* offsets, int64_t* slot, int32_t* row_token, Stream stream) {
  const int64_t n = T * k;
  int64_t *d_rank = nullptr, *d_counts = nullptr, *d_offsets = nullptr, *d_kept = nullptr;
  d_rank = static_cast<decltype(d_rank)>(stream_alloc(sizeof(int64_t) * std::max<int64_t>(n, 1), stream));
  d_counts = static_cast<decltype(d_counts)>(stream_alloc(sizeof(int64_t) * E, stream));
  d_offsets = static_cast<decltype(d_offsets)>(stream_alloc(sizeof(int64_t) * (E + 1), stream));
  d_kept = static_cast<decltype(d_kept)>(stream_alloc(sizeof(int64_t) * E, stream));
  MOE_LAUNCH(unsigned(E), kThreads, 0, stream, rank_copies)(idx, n, d_rank, d_counts);
  MOE_CUDA_LAUNCHED();
  MOE_CUDA_CHECK(cudaMemcpyAsync(counts, d_counts, sizeof(int64_t) * E, cudaMemcpyDeviceToHost, stream));
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<int64_t> kept(E);
  offsets[0] = 0;
  for (int64_t e = 0; e < E; ++e) {
    kept[e] = capacity ? std::min(counts[e], capacity[e]) : counts[e];
    offsets[e + 1] = offsets[e] + kept[e];
  }
  MOE_CUDA_CHECK(cudaMemcpyAsync(d_offsets, offsets, sizeof(int64_t) * (E + 1), cudaMemcpyHostToDevice, stream));
  MOE_CUDA_CHECK(cudaMemcpyAsync(d_kept, kept.data(), sizeof(int64_t) * E, cudaMemcpyHostToDevice, stream));
  if (n > 0) {
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, place_copies)(idx, d_rank, d_offsets, d_kept, n, k, slot, row_token);
    MOE_CUDA_LAUNCHED();
  }
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // `kept` (host) is read by the copy above
  stream_free(d_rank, stream);
  stream_free(d_counts, stream);
  stream_free(d_offsets, stream);
  stream_free(d_kept, stream);
  return offsets[E];
}

void moe_gather(const float* x, const int32_t* row_token, int64_t n, int64_t D, float* xs, Stream stream) {
  if (n == 0) return;
  if (vector4_ok(D, x, xs))
    launch_gather<float4>(x, row_token, n, D, xs, stream);
  else
    launch_gather<float>(x, row_token, n, D, xs, stream);
}
void moe_gather_backward(const float* dxs, const int64_t* slot, int64_t T, int64_t k, int64_t D, float* dx,
                         Stream stream) {
  if (T == 0) return;
  sum_copies_any(dxs, slot, nullptr, T, k, D, dx, stream);
}
void moe_unorder_forward(const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k, int64_t D,
                         float* y, Stream stream) {
  if (T == 0) return;
  sum_copies_any(ye, slot, w, T, k, D, y, stream);
}
void moe_unorder_backward(const float* dy, const float* ye, const int64_t* slot, const float* w, int64_t T, int64_t k,
                          int64_t D, float* dye, float* dw, Stream stream) {
  if (T == 0) return;
  MOE_LAUNCH(unsigned(T * k), kThreads, 0, stream, unorder_bwd)(dy, ye, slot, w, k, D, dye, dw);
  MOE_CUDA_LAUNCHED();
}

void moe_to_chunk_major(const int64_t* offsets, const int64_t* chunk_offsets, int64_t E, int64_t C, int32_t* row_token,
                        int64_t* slot, int64_t n, Stream stream) {
  const int64_t rows = offsets[E];
  if (rows == 0) return;
  auto* d_offsets = static_cast<int64_t*>(stream_alloc(sizeof(int64_t) * (E + 1), stream));
  auto* d_chunks = static_cast<int64_t*>(stream_alloc(sizeof(int64_t) * (C * E + 1), stream));
  auto* place = static_cast<int64_t*>(stream_alloc(sizeof(int64_t) * rows, stream));
  auto* moved = static_cast<int32_t*>(stream_alloc(sizeof(int32_t) * rows, stream));
  MOE_CUDA_CHECK(cudaMemcpyAsync(d_offsets, offsets, sizeof(int64_t) * (E + 1), cudaMemcpyHostToDevice, stream));
  MOE_CUDA_CHECK(
      cudaMemcpyAsync(d_chunks, chunk_offsets, sizeof(int64_t) * (C * E + 1), cudaMemcpyHostToDevice, stream));
  MOE_LAUNCH(blocks_for(rows), kThreads, 0, stream, chunk_major_places)(d_offsets, d_chunks, E, C, rows, place);
  MOE_CUDA_LAUNCHED();
  MOE_LAUNCH(blocks_for(rows), kThreads, 0, stream, scatter_tokens)(row_token, place, rows, moved);
  MOE_CUDA_LAUNCHED();
  MOE_CUDA_CHECK(cudaMemcpyAsync(row_token, moved, sizeof(int32_t) * rows, cudaMemcpyDeviceToDevice, stream));
  if (n > 0) {
    MOE_LAUNCH(blocks_for(n), kThreads, 0, stream, renumber_slots)(place, n, slot);
    MOE_CUDA_LAUNCHED();
  }
  MOE_CUDA_CHECK(cudaStreamSynchronize(stream));  // offsets and chunk_offsets (host) were read by the copies
  for (void* p : {static_cast<void*>(d_offsets), static_cast<void*>(d_chunks), static_cast<void*>(place),
                  static_cast<void*>(moved)})
    stream_free(p, stream);
}

}  // namespace moe::cuda
