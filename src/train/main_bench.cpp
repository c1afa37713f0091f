// moe-bench CONFIG.yaml [--set key=value]...
// Trains the config's model on synthetic tokens (no data files needed): 2 warm-up steps, then
// train.steps timed steps. Prints tokens/s and MFU = model FLOP/s over the fp32 GEMM peak that
// OpenBLAS sgemm reaches on this machine, measured in the same run, plus the phase breakdown.
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/profiler.h"
#include "core/rng.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "train/cli_args.h"
#include "train/flops.h"
#include "train/train_step.h"

int main(int argc, char** argv) {
  moe::init_logging(0);
  try {
    moe::CliArgs args = moe::parse_cli_args(argc, argv, "moe-bench");
    if (args.help) {
      std::printf("usage: moe-bench CONFIG.yaml [--set key=value]...\n");
      return 0;
    }
    moe::Config cfg = moe::load_config(args.config_path, args.overrides);
    cfg.finalize(1, /*need_data=*/false);
    const auto& t = cfg.train;
    auto comm = moe::make_local_communicator();
    moe::ParallelGroups groups = moe::ParallelGroups::build(*comm, cfg);
    moe::Transformer model(cfg.model, comm.get());
    model.params().initialize(uint64_t(cfg.run.seed));
    moe::AdamW optim(cfg.optim, model.params().params());
    moe::StepRunner runner(cfg, groups, model, optim);
    moe::CounterRng rng(uint64_t(cfg.run.seed), "bench-tokens");
    int64_t drawn = 0;
    auto fill = [&](int, int32_t* tokens, int32_t* targets) {
      const int64_t n = int64_t(t.micro_batch) * t.seq_len;
      for (int64_t i = 0; i < n; ++i) {
        tokens[i] = int32_t(rng.bits(uint64_t(drawn + i)) % uint64_t(cfg.model.vocab_size));
        targets[i] = int32_t(rng.bits(uint64_t(drawn + i + 1)) % uint64_t(cfg.model.vocab_size));
      }
      drawn += n;
    };

    std::printf("moe-bench: %s, %d threads\n", args.config_path.c_str(), omp_get_max_threads());
    const double peak = moe::measure_gemm_peak_gflops(2.0);
    const double flops_per_token = moe::training_flops_per_token(cfg.model, t.seq_len, model.active_matmul_params());
    std::printf("fp32 GEMM peak (OpenBLAS sgemm 2048^3): %.1f GFLOP/s\n", peak);
    std::printf("model: %.2fM parameters, %.2fM active matmul parameters, %.1f MFLOP per token\n",
                model.params().num_elements() / 1e6, model.active_matmul_params() / 1e6, flops_per_token / 1e6);

    for (int s = 0; s < 2; ++s) runner.run(s, fill);
    moe::Profiler::instance().take();
    std::map<std::string, double> phases;
    std::vector<double> step_ms;
    for (int s = 0; s < t.steps; ++s) {
      double t0 = moe::now_ms();
      runner.run(2 + s, fill);
      step_ms.push_back(moe::now_ms() - t0);
      for (auto& [name, ms] : moe::Profiler::instance().take()) phases[name] += ms;
    }
    double total_ms = 0;
    for (double ms : step_ms) total_ms += ms;
    const double tokens = double(t.global_batch) * t.seq_len * t.steps;
    const double tps = tokens / (total_ms / 1000.0);
    const double mfu = flops_per_token * tps / (peak * 1e9);
    std::printf("steps timed: %d, mean step %.1f ms (min %.1f)\n", t.steps, total_ms / t.steps,
                *std::min_element(step_ms.begin(), step_ms.end()));
    std::printf("tokens/s: %.1f\nachieved: %.1f GFLOP/s\nMFU: %.1f%% of the measured fp32 GEMM peak\n", tps,
                flops_per_token * tps / 1e9, 100.0 * mfu);
    std::vector<std::pair<std::string, double>> rows(phases.begin(), phases.end());
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second > b.second; });
    double covered = 0;
    std::printf("phase breakdown (ms per step):\n");
    for (auto& [name, ms] : rows) {
      covered += ms;
      std::printf("  %-20s %9.2f  %5.1f%%\n", name.c_str(), ms / t.steps, 100.0 * ms / total_ms);
    }
    std::printf("  %-20s %9.2f  %5.1f%%\n", "other", (total_ms - covered) / t.steps, 100.0 * (total_ms - covered) / total_ms);
  } catch (const std::exception& e) {
    moe::log_error(e.what());
    return 1;
  }
  return 0;
}
