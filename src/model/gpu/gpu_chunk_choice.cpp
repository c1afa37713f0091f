// GpuTransformer's choice of the number of pipelined chunks under expert parallelism
// (set_expert_parallel with chunks 0): FSMoE's online profiling and cost model
// (parallel/chunk_cost_model.h). At the first MoE forward every ep rank times, on this run's
// shapes, the ep group's all-to-all at two sizes and one of the experts' grouped GEMMs at two
// sizes (cuda::median_ms: the median of three after a warm-up); the times are max-reduced over the
// group (so every rank fits the same lines and makes the same choice), the experts' forward is
// taken as three such GEMMs and their backward as six, and the count with the least simulated
// forward + backward is kept for every MoE layer.
#include <algorithm>
#include <string>
#include <vector>

#include "core/logging.h"
#include "kernels/cuda/device.h"
#include "kernels/elementwise.h"
#include "model/gpu/gpu_block.h"
#include "model/gpu/gpu_transformer.h"
#include "parallel/chunk_cost_model.h"

namespace moe::gpu {

int GpuTransformer::choose_ep_chunks(const Block& b, int64_t rows) {
  const int ranks = ep_host_->size();
  const int64_t D = cfg_.d_model, Fe = cfg_.moe.expert_hidden, El = E_ / ranks;
  const int64_t width = bf16_ && D % 2 == 0 ? D / 2 : D;  // floats per row in the exchange (bf16 rows: pairs)
  const int64_t sizes[2] = {std::max<int64_t>(rows / 8, ranks), std::max<int64_t>(rows, ranks)};
  if (sizes[0] / ranks == sizes[1] / ranks) return 1;  // a row or so per rank: nothing to pipeline
  DeviceArray<float> send(size_t(sizes[1] * width)), recv(size_t(sizes[1] * width)), x(size_t(sizes[1] * D)),
      y(size_t(sizes[1] * Fe));
  DeviceArray<uint16_t> x16(size_t(sizes[1] * D)), y16(size_t(sizes[1] * Fe));
  send.zero();
  x.zero();
  cuda::to_bf16(x.data(), x16.data(), sizes[1] * D);
  std::vector<float> measured;  // (all-to-all, GEMM) ms at each size
  for (const int64_t n : sizes) {
    const int64_t per_rank = n / ranks;
    std::vector<int64_t> counts(size_t(ranks), per_rank * width);
    measured.push_back(float(
        cuda::median_ms([&] { ep_device_->all_to_all_v(send.data(), counts.data(), recv.data(), counts.data()); })));
    std::vector<int64_t> offsets(size_t(El + 1));
    for (int64_t e = 0; e <= El; ++e) offsets[size_t(e)] = per_rank * ranks * e / El;
    const Groups G{offsets.data(), El, El};
    const std::string w1 = b.prefix + "/moe/experts/w1";
    measured.push_back(float(cuda::median_ms([&] {
      if (bf16_)
        experts_fwd_bf16(G, x16.data(), D, w1, Fe, y16.data(), true);
      else
        grouped_fwd(G, x.data(), D, w1, Fe, y.data());
    })));
  }
  ep_host_->all_reduce_max(measured.data(), int64_t(measured.size()));  // the slowest rank's times
  const double n0 = double(sizes[0] / ranks * ranks), n1 = double(sizes[1] / ranks * ranks);
  ChunkCostModel model;
  model.comm = fit_linear_cost({{n0, measured[0]}, {n1, measured[2]}});
  const LinearCost gemm = fit_linear_cost({{n0, measured[1]}, {n1, measured[3]}});
  model.compute = {3 * gemm.latency, 3 * gemm.per_row};   // w1, w3, w2
  model.backward = {6 * gemm.latency, 6 * gemm.per_row};  // dx and dW of each
  log_info("[gpu] pipelined expert-parallel chunks: " + describe_chunk_choice(model, rows, kMaxEpChunks));
  return choose_chunk_count(model, rows, kMaxEpChunks);
}

}  // namespace moe::gpu
