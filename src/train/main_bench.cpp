// moe-bench CONFIG.yaml [--set key=value]...        alone, or under mpirun for a parallel layout
// Trains the config's model on synthetic tokens (no data files needed): 2 warm-up steps, then
// 2 x train.steps timed steps with the profiler on and off in turn. Prints tokens/s (total and per
// rank) and MFU = model FLOP/s over the sum of the ranks' fp32 GEMM peaks (OpenBLAS sgemm, measured
// in the same run), the phase breakdown, exposed and overlapped communication, the profiler's
// overhead, and with ep > 1 the time of Dispatch + Combine against bare MPI_Alltoallv of the same
// bytes.
#include <mpi.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>

#include "core/host_memory.h"
#include <map>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/median.h"
#include "core/profiler.h"
#include "core/rng.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/layout.h"
#include "train/cli_args.h"
#include "train/dispatch_bench.h"
#include "train/flops.h"
#include "train/train_step.h"

namespace moe {
namespace {

// Cost of one profiled scope (enter, leave, exclusive-time accounting), nested one deep as in the
// model, timed on a throw-away phase name; the phases it adds are discarded.
double time_profiler_scope_ns() {
  Profiler& prof = Profiler::instance();
  const int n = 200000;
  const double t0 = now_ms();
  for (int i = 0; i < n; ++i) {
    ScopedPhase outer("profiler_selftest_outer");
    ScopedPhase inner("profiler_selftest_inner");
  }
  const double ns = (now_ms() - t0) * 1e6 / (2.0 * n);
  prof.take();
  prof.take_scope_count();
  return ns;
}

int run_bench(int argc, char** argv, Communicator& world) {
  CliArgs args = parse_cli_args(argc, argv, "moe-bench");
  const bool root = world.rank() == 0;
  if (args.help) {
    if (root) std::printf("usage: [mpirun -np N] moe-bench CONFIG.yaml [--set key=value]...\n");
    return 0;
  }
  Config cfg = load_config(args.config_path, args.overrides);
  cfg.finalize(world.size(), /*need_data=*/false);
  MOE_CHECK(cfg.train.precision == "fp32", cfg.source << ": train.precision bf16 runs on the GPU model only: use "
                                                      "moe-gpu-bench (docs/cuda.md); moe-bench times the CPU in fp32");
  const auto& t = cfg.train;
  ParallelGroups groups = ParallelGroups::build(world, cfg);
  Transformer model(cfg.model, MoeGroups(groups.world, groups.ep.get(), groups.tp.get()));
  model.params().initialize(uint64_t(cfg.run.seed));
  AdamW optim(cfg.optim, model.params().params(), cfg.parallel.zero == 1 ? groups.dp.get() : nullptr);
  StepRunner runner(cfg, groups, model, optim);
  CounterRng rng(uint64_t(cfg.run.seed), "bench-tokens-" + std::to_string(world.rank()));
  int64_t drawn = 0;
  auto fill = [&](int, int32_t* tokens, int32_t* targets) {
    const int64_t n = int64_t(t.micro_batch) * t.seq_len;
    for (int64_t i = 0; i < n; ++i) {
      tokens[i] = int32_t(rng.bits(uint64_t(drawn + i)) % uint64_t(cfg.model.vocab_size));
      targets[i] = int32_t(rng.bits(uint64_t(drawn + i + 1)) % uint64_t(cfg.model.vocab_size));
    }
    drawn += n;
  };

  double peak = measure_gemm_peak_gflops(2.0);  // every rank at once: the contention training sees
  world.all_reduce_sum(&peak, 1);
  const double flops_per_token = training_flops_per_token(cfg.model, t.seq_len, model.active_matmul_params());
  if (root) {
    std::printf("moe-bench: %s, %d rank(s) (dp %d, ep %d), %d thread(s) per rank\n", args.config_path.c_str(),
                world.size(), groups.dp_size, cfg.parallel.ep, omp_get_max_threads());
    std::printf("fp32 GEMM peak (OpenBLAS sgemm 2048^3), sum over ranks: %.1f GFLOP/s\n", peak);
    std::printf("model: %.2fM parameters, %.2fM active matmul parameters, %.1f MFLOP per token\n",
                model.params().num_elements() / 1e6, model.active_matmul_params() / 1e6, flops_per_token / 1e6);
  }
  for (int s = 0; s < 2; ++s) runner.run(s, fill);
  Profiler& prof = Profiler::instance();
  prof.take();
  prof.take_overlapped_ms();
  prof.take_scope_count();
  // 2 x train.steps timed steps, the profiler on and off in turn, so its overhead is measured
  // against the same drift of the machine; the breakdown comes from the profiled half.
  std::map<std::string, double> phases;
  std::vector<double> step_ms, on_ms, off_ms;
  double overlapped_ms = 0;
  for (int s = 0; s < 2 * t.steps; ++s) {
    const bool on = s % 2 == 0;
    prof.set_enabled(on);
    world.barrier();
    double t0 = now_ms();
    runner.run(2 + s, fill);
    world.barrier();
    step_ms.push_back(now_ms() - t0);
    (on ? on_ms : off_ms).push_back(step_ms.back());
    if (!on) continue;
    for (auto& [name, ms] : prof.take()) phases[name] += ms;
    overlapped_ms += prof.take_overlapped_ms();
  }
  prof.set_enabled(true);
  const double scopes_per_step = double(prof.take_scope_count()) / t.steps;
  const double scope_ns = time_profiler_scope_ns();
  double total_ms = 0, on_total = 0;
  for (double ms : step_ms) total_ms += ms;
  for (double ms : on_ms) on_total += ms;
  const int steps = 2 * t.steps;
  const double tokens = double(t.global_batch) * t.seq_len * steps;
  const double tps = tokens / (total_ms / 1000.0);
  if (root) {
    std::printf("steps timed: %d, mean step %.1f ms (min %.1f)\n", steps, total_ms / steps,
                *std::min_element(step_ms.begin(), step_ms.end()));
    std::printf("tokens/s: %.1f total, %.1f per rank\nachieved: %.1f GFLOP/s\nMFU: %.1f%% of the measured fp32 GEMM peak\n",
                tps, tps / world.size(), flops_per_token * tps / 1e9, 100.0 * flops_per_token * tps / (peak * 1e9));
    std::vector<std::pair<std::string, double>> rows(phases.begin(), phases.end());
    std::sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second > b.second; });
    double covered = 0, comm = 0;
    std::printf("phase breakdown on rank 0 (ms per step, profiled steps):\n");
    for (auto& [name, ms] : rows) {
      covered += ms;
      if (is_communication_phase(name)) comm += ms;
      std::printf("  %-20s %9.2f  %5.1f%%\n", name.c_str(), ms / t.steps, 100.0 * ms / on_total);
    }
    std::printf("  %-20s %9.2f  %5.1f%%\n", "other", (on_total - covered) / t.steps,
                100.0 * (on_total - covered) / on_total);
    std::printf("communication on rank 0: %.2f ms/step exposed (%.1f%% of the step), %.2f ms/step overlapped with "
                "compute\n", comm / t.steps, 100.0 * comm / on_total, overlapped_ms / t.steps);
    const double on_median = median(on_ms), off_median = median(off_ms);
    std::printf("profiler overhead: %.0f scopes/step x %.0f ns = %.3f ms/step (%.4f%% of the step); median step "
                "%.1f ms with it, %.1f ms without (%+.2f%%: run-to-run noise, the steps alternate)\n",
                scopes_per_step, scope_ns, scopes_per_step * scope_ns / 1e6,
                100.0 * scopes_per_step * scope_ns / 1e6 / (on_total / t.steps), on_median, off_median,
                100.0 * (on_median - off_median) / off_median);
  }
  if (cfg.parallel.ep > 1) {
    DispatchTiming d = time_dispatch_combine(*groups.ep, cfg.model.moe.num_experts,
                                             int64_t(t.micro_batch) * t.seq_len * cfg.model.moe.top_k,
                                             cfg.model.d_model, 50);
    if (root)
      std::printf("dispatch + combine: %.3f ms; bare MPI_Alltoallv there and back, same bytes: %.3f ms; ratio %.2f\n",
                  d.dispatch_combine_ms, d.bare_ms, d.dispatch_combine_ms / d.bare_ms);
  }
  return 0;
}

}  // namespace
}  // namespace moe

int main(int argc, char** argv) {
  moe::tune_host_allocator();
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);  // non-blocking all-reduce on a thread (comm_worker.h)
  int size = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  moe::init_logging(rank);
  int rc = 0;
  auto world = size > 1 ? moe::make_mpi_world_communicator() : moe::make_local_communicator();
  try {
    rc = moe::run_bench(argc, argv, *world);
  } catch (const std::exception& e) {
    moe::log_error(e.what());
    rc = 1;
  }
  if (rc != 0 && size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
  world.reset();
  MPI_Finalize();
  return rc;
}
