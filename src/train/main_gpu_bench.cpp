// moe-gpu-bench CONFIG.yaml [--set key=value]...        one GPU (built when the build has CUDA)
// Trains the config's model on the GPU model (src/model/gpu/) on synthetic tokens, in the config's
// train.precision (fp32 or bf16): 2 warm-up steps, then train.steps timed optimizer steps of
// global_batch / micro_batch micro-batches each. Prints tokens/s and MFU against the bf16 (or fp32)
// GEMM peak that cuBLAS reaches on the same GPU in the same run (8192^3, random values; the
// environment variable MOE_PEAK_GEMM_N sets another size, as the CPU-emulated smoke test of CI
// does). docs/cuda.md.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/host_memory.h"
#include "core/logging.h"
#include "core/profiler.h"
#include "core/rng.h"
#include "kernels/cuda/device.h"
#include "kernels/gemm.h"
#include "model/gpu/gpu_transformer.h"
#include "model/transformer.h"
#include "parallel/communicator.h"
#include "train/cli_args.h"
#include "train/flops.h"

namespace moe {
namespace {

int run(int argc, char** argv) {
  CliArgs args = parse_cli_args(argc, argv, "moe-gpu-bench");
  if (args.help) {
    std::printf("usage: moe-gpu-bench CONFIG.yaml [--set key=value]...\n");
    return 0;
  }
  Config cfg = load_config(args.config_path, args.overrides);
  cfg.finalize(1, /*need_data=*/false);
  MOE_CHECK(cuda::available(), "moe-gpu-bench: no CUDA device can be used on this machine");
  const auto& t = cfg.train;
  const bool bf16 = t.precision == "bf16";
  const int micro = t.global_batch / t.micro_batch;
  std::unique_ptr<gpu::GpuTransformer> model;
  double active = 0;
  {
    auto comm = make_local_communicator();
    Transformer host(cfg.model, comm.get());  // initial weights, then freed
    host.params().initialize(uint64_t(cfg.run.seed));
    active = host.active_matmul_params();
    model = std::make_unique<gpu::GpuTransformer>(cfg.model, host.params(), bf16);
  }
  const char* peak_env = std::getenv("MOE_PEAK_GEMM_N");
  const int peak_n = peak_env ? std::max(64, std::atoi(peak_env)) : 8192;
  const double peak = cuda::gemm_peak_tflops(bf16, peak_n);
  const double flops_per_token = training_flops_per_token(cfg.model, t.seq_len, active);
  std::printf("moe-gpu-bench: %s on %s, %s, %d micro-batch(es) of %d x %d tokens per step\n", args.config_path.c_str(),
              cuda::device_name().c_str(), t.precision.c_str(), micro, t.micro_batch, t.seq_len);
  std::printf("cuBLAS %s GEMM peak (%d^3): %.1f TFLOP/s\n", bf16 ? "bf16" : "fp32", peak_n, peak);
  std::printf("model: %.2f B active matmul parameters per token, %.2f GFLOP per token\n", active / 1e9,
              flops_per_token / 1e9);
  CounterRng rng(uint64_t(cfg.run.seed), "gpu-bench-tokens");
  const int64_t n = int64_t(t.micro_batch) * t.seq_len;
  std::vector<int32_t> tokens(n), targets(n);
  int64_t drawn = 0;
  auto step = [&]() {
    model->zero_grad();
    for (int m = 0; m < micro; ++m) {
      for (int64_t i = 0; i < n; ++i) {
        tokens[i] = int32_t(rng.bits(uint64_t(drawn + i)) % uint64_t(cfg.model.vocab_size));
        targets[i] = int32_t(rng.bits(uint64_t(drawn + i + 1)) % uint64_t(cfg.model.vocab_size));
      }
      drawn += n;
      model->forward_backward(tokens.data(), targets.data(), t.micro_batch, t.seq_len, 1.0f / float(micro));
    }
    model->optimizer_step(cfg.optim, cfg.optim.lr, t.grad_clip);
  };
  for (int s = 0; s < 2; ++s) step();
  if (bf16) {
    const cuda::AttentionChoice& ac = model->attention_choice();
    auto name = [](cuda::AttentionKernel k) { return k == cuda::AttentionKernel::kFused ? "fused" : "blocked"; };
    std::printf("attention of one layer, measured at the first step: forward blocked %.2f ms, fused %.2f ms "
                "(relative difference %.1e) -> %s; backward blocked %.2f ms, fused %.2f ms (%.1e) -> %s\n",
                ac.blocked_fwd_ms, ac.fused_fwd_ms, ac.fused_fwd_rel_error, name(ac.forward), ac.blocked_bwd_ms,
                ac.fused_bwd_ms, ac.fused_bwd_rel_error, name(ac.backward));
    // the useful work of causal attention (QK^T and PV over the unmasked half; the backward 2.5x),
    // to set the kernels against the GEMM peak above
    const double hd = double(cfg.model.d_model) / cfg.model.n_heads, S = double(t.seq_len);
    const double fwd_tflop = 2.0 * 2.0 * t.micro_batch * cfg.model.n_heads * S * S * hd * 0.5 / 1e12;
    auto rate = [](double tflop, double ms) { return ms > 0 ? tflop / (ms / 1e3) : 0.0; };
    std::printf("attention TFLOP/s (useful work): forward blocked %.0f, fused %.0f; backward blocked %.0f, fused "
                "%.0f\n",
                rate(fwd_tflop, ac.blocked_fwd_ms), rate(fwd_tflop, ac.fused_fwd_ms),
                rate(2.5 * fwd_tflop, ac.blocked_bwd_ms), rate(2.5 * fwd_tflop, ac.fused_bwd_ms));
  }
  if (cfg.model.moe.num_experts > 0) {
    const cuda::GroupedChoice& gc = model->grouped_choice();
    auto name = [](cuda::GroupedImpl i) { return i == cuda::GroupedImpl::kPerGroup ? "one GEMM per expert" : "grouped call"; };
    std::printf("expert GEMMs, measured at the first step: x W^T grouped call %.0f, one GEMM per expert %.0f TFLOP/s "
                "-> %s; weight gradient %.0f / %.0f TFLOP/s -> %s\n",
                gc.rows_tflops[0], gc.rows_tflops[1], name(gc.rows), gc.weight_grad_tflops[0], gc.weight_grad_tflops[1],
                name(gc.weight_grad));
  }
  std::vector<double> ms;
  for (int s = 0; s < t.steps; ++s) {
    const double t0 = now_ms();
    step();
    ms.push_back(now_ms() - t0);
  }
  double total = 0;
  for (double x : ms) total += x;
  const double tps = double(t.global_batch) * t.seq_len * t.steps / (total / 1000.0);
  std::printf("steps timed: %d, mean step %.1f ms (min %.1f)\n", t.steps, total / t.steps,
              *std::min_element(ms.begin(), ms.end()));
  std::printf("tokens/s: %.1f\nachieved: %.1f TFLOP/s\nMFU: %.1f%% of the measured cuBLAS %s peak\n", tps,
              flops_per_token * tps / 1e12, 100.0 * flops_per_token * tps / (peak * 1e12), bf16 ? "bf16" : "fp32");
  // Where a step's time goes: one more step with every phase waiting for the device at both ends.
  Profiler::instance().take();
  model->set_phase_timing(true);
  const double t0 = now_ms();
  step();
  const double synced = now_ms() - t0;
  model->set_phase_timing(false);
  auto phases = Profiler::instance().take();
  std::sort(phases.begin(), phases.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::printf("phases of one step with the device synchronized around each phase (%.1f ms):\n", synced);
  for (const auto& [name, phase_ms] : phases)
    std::printf("  %-20s %9.2f ms %5.1f%%\n", name.c_str(), phase_ms, 100.0 * phase_ms / synced);
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::tune_host_allocator();
  moe::init_logging(0);
  try {
    return moe::run(argc, argv);
  } catch (const std::exception& e) {
    moe::log_error(e.what());
    return 1;
  }
}
