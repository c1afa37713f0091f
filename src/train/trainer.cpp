// Trainer loop.
#include "train/trainer.h"

#include "parallel/layout.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/logging.h"
#include "core/profiler.h"
#include "data/sampler.h"
#include "data/token_file.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/mpi_handle.h"
#include "train/async_checkpoint.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/flops.h"
#include "train/metrics.h"
#include "train/phase_stats.h"
#include "train/step_log.h"
#include "train/trace_writer.h"
#include "train/train_step.h"
#include "train/watchdog.h"

namespace moe {
namespace fs = std::filesystem;

Trainer::Trainer(const Config& cfg, Communicator& world) : cfg_(cfg), world_(world) {}

CheckpointMeta Trainer::timed_load(const std::string& path, Transformer& model, AdamW* optim) {
  const double t0 = now_ms();
  CheckpointMeta meta = load_checkpoint(path, model.params(), optim);
  const double secs = (now_ms() - t0) / 1000.0, mb = double(fs::file_size(path)) / 1e6;
  log_info(strformat("[checkpoint] read %s: %.1f MB in %.2f s (%.0f MB/s)", path.c_str(), mb, secs, mb / secs));
  return meta;
}

int64_t Trainer::load_for_resume(const std::string& path, Transformer& model, AdamW& optim) {
  CheckpointMeta meta = timed_load(path, model, &optim);
  MOE_CHECK(optim.step_count() == meta.step,
            "checkpoint '" << path << "': /optim step " << optim.step_count() << " differs from step " << meta.step);
  log_info(strformat("[checkpoint] resumed from %s at step %lld", path.c_str(), (long long)meta.step));
  return meta.step;
}

// resume: auto. Tries the checkpoints newest first; one that fails on any rank (truncated,
// corrupted, of another shape) is skipped on every rank, with the reason in the log.
int64_t Trainer::resume_newest_good(Transformer& model, AdamW& optim) {
  for (const auto& path : list_checkpoints_newest_first(cfg_.checkpoint.dir)) {
    std::string reason;
    int64_t step = 0;
    try {
      step = load_for_resume(path, model, optim);
    } catch (const Error& e) {
      reason = e.message();
    }
    int64_t failed = reason.empty() ? 0 : 1;
    world_.all_reduce_sum(&failed, 1);
    if (failed == 0) return step;
    log_warn("[checkpoint] skipping " + path + ": " +
             (reason.empty() ? std::string("it failed verification on another rank") : reason));
  }
  return 0;
}

int Trainer::run() {
  const auto& t = cfg_.train;
  const bool on_gpu = t.precision == "bf16";  // bf16 exists on the GPU only (docs/cuda.md)
  MOE_CHECK(!on_gpu || gpu_factory_, cfg_.source << ": train.precision bf16 trains on a GPU, and this build has no "
                                                    "CUDA (nvcc was not found when it was built); fp32 trains on the CPU");
  MOE_CHECK(!on_gpu || gpu_available_(), cfg_.source << ": train.precision bf16 trains on a GPU, and this machine has "
                                                        "none that CUDA can use; fp32 trains on the CPU");
  const int rank = world_.rank(), world = world_.size();
  std::error_code ec;
  fs::create_directories(cfg_.run.out_dir, ec);
  MOE_CHECK(!ec, "run.out_dir '" << cfg_.run.out_dir << "' cannot be created: " << ec.message());
  init_logging(rank, (fs::path(cfg_.run.out_dir) / "train.log").string());
  const std::string resolved = config_to_yaml(cfg_);
  log_info("[trainer] config " + cfg_.source + " resolved to:\n" + resolved);

  // ---- data: every check before any work ----
  TokenFile train_file(cfg_.data.train, cfg_.data.token_dtype, t.seq_len);
  train_file.check_vocab(cfg_.model.vocab_size);
  std::unique_ptr<TokenFile> valid_file;
  if (!cfg_.data.valid.empty()) {
    valid_file = std::make_unique<TokenFile>(cfg_.data.valid, cfg_.data.token_dtype, t.seq_len);
    valid_file->check_vocab(cfg_.model.vocab_size);
  }
  log_info(strformat("[data] train %s: %lld tokens, %lld samples of %d", cfg_.data.train.c_str(),
                     (long long)train_file.num_tokens(), (long long)train_file.num_samples(), t.seq_len));

  // ---- layout, model and optimizer ----
  ParallelGroups groups = ParallelGroups::build(world_, cfg_);
  log_info(strformat("[parallel] %d ranks: dp %d x tp %d, ep %d", world, groups.dp_size, groups.tp_size,
                     cfg_.parallel.ep));
  Transformer model(cfg_.model, MoeGroups(groups.world, groups.ep.get(), groups.tp.get()));
  model.params().initialize(uint64_t(cfg_.run.seed));
  AdamW optim(cfg_.optim, model.params().params(), cfg_.parallel.zero == 1 ? groups.dp.get() : nullptr);
  log_info(strformat("[model] %lld parameters, %lld active matmul parameters per token",
                     (long long)model.params().num_elements(), (long long)model.active_matmul_params()));

  // ---- resume or initialise ----
  int64_t start_step = 0;  // checkpoints are written after step >= 1, so 0 means nothing resumed
  if (cfg_.checkpoint.resume == "auto") {
    start_step = resume_newest_good(model, optim);
  } else if (cfg_.checkpoint.resume != "never") {
    start_step = load_for_resume(cfg_.checkpoint.resume, model, optim);  // refused with the reason when bad
  }
  if (start_step == 0 && !cfg_.checkpoint.init_from.empty()) {
    timed_load(cfg_.checkpoint.init_from, model, nullptr);  // /model only; refused with the reason when bad
    log_info("[checkpoint] model initialised from " + cfg_.checkpoint.init_from);
  }
  if (rank == 0) {
    if (int n = remove_stale_temporaries(cfg_.checkpoint.dir))
      log_warn(strformat("[checkpoint] removed %d incomplete temporary file(s) from %s (a save was interrupted)", n,
                         cfg_.checkpoint.dir.c_str()));
  }
  if (start_step >= t.steps) {
    log_info(strformat("[trainer] checkpoint is at step %lld >= train.steps %d: nothing to do",
                       (long long)start_step, t.steps));
    return 0;
  }

  // ---- loop ----
  const int dp = groups.dp_size, dp_rank = groups.dp_rank;
  Sampler sampler(train_file.num_samples(), t.global_batch, cfg_.data.shuffle, uint64_t(cfg_.run.seed));
  StepRunner runner(cfg_, groups, model, optim);
  std::unique_ptr<GpuTraining> gpu = on_gpu ? gpu_factory_(cfg_, model, optim, groups) : nullptr;
  // Every rank measures its own peak at the same time (the contention training will see); MFU is
  // against their sum. On a GPU: cuBLAS's peak in train.precision.
  double peak = gpu ? gpu->peak_tflops() * 1e3 : measure_gemm_peak_gflops(0.5);
  world_.all_reduce_sum(&peak, 1);
  const double flops_per_token = training_flops_per_token(cfg_.model, t.seq_len, model.active_matmul_params());
  log_info(strformat("[trainer] %s GEMM peak %.1f GFLOP/s (all ranks); %.1f MFLOP per token; steps %lld..%d",
                     gpu ? "GPU (cuBLAS, train.precision)" : "fp32", peak, flops_per_token / 1e6,
                     (long long)start_step + 1, t.steps));
  std::unique_ptr<MetricsWriter> metrics;
  if (rank == 0) metrics = std::make_unique<MetricsWriter>((fs::path(cfg_.run.out_dir) / "metrics.jsonl").string());
  StepLog step_log(cfg_);
  // Saves: a snapshot in the step (the "checkpoint" phase), the write in the background.
  const bool sync_env = std::getenv("MOE_CKPT_SYNC") && std::string(std::getenv("MOE_CKPT_SYNC")) == "1";
  const bool background = !sync_env && (world == 1 || mpi_thread_multiple());
  if (!background && !sync_env && rank == 0)
    log_warn("[checkpoint] MPI lacks MPI_THREAD_MULTIPLE: checkpoints are written synchronously");
  AsyncCheckpointWriter writer(world_.split(0, rank), background, [rank](const std::string& path, double secs) {
    if (rank != 0) return;
    const double mb = double(fs::file_size(path)) / 1e6;
    log_info(strformat("[checkpoint] saved %s: %.1f MB written in %.2f s (%.0f MB/s)", path.c_str(), mb, secs,
                       mb / secs));
  });
  Profiler::instance().set_enabled(cfg_.profile.enabled);
  Profiler::instance().set_main_thread();
  Profiler::instance().take();
  Profiler::instance().take_bytes();
  Watchdog watchdog(world_);
  // Trace window, 1-based steps inclusive; [0, 0]: steps 2 and 3 (after the warm-up step).
  int64_t trace_first = cfg_.profile.trace_steps[0], trace_last = cfg_.profile.trace_steps[1];
  if (trace_first == 0 && trace_last == 0) trace_first = 2, trace_last = 3;
  trace_first = std::max<int64_t>(trace_first, start_step + 1);
  trace_last = std::min<int64_t>(trace_last, t.steps);
  const bool trace = cfg_.profile.trace && trace_first <= trace_last;

  for (int64_t step = start_step; step < t.steps; ++step) {
    const double t0 = now_ms();
    watchdog.step_started(step);
    if (trace && step + 1 == trace_first) Profiler::instance().set_tracing(true);
    const BatchFiller fill = [&](int m, int32_t* tokens, int32_t* targets) {
      auto samples = sampler.micro_batch(step, dp_rank, dp, m, t.micro_batch);
      for (size_t i = 0; i < samples.size(); ++i)
        train_file.read_sample(samples[i], tokens + i * t.seq_len, targets + i * t.seq_len);
    };
    StepResult r = gpu ? gpu->run(step, fill) : runner.run(step, fill);
    const int64_t done = step + 1;
    StepMetrics sm;
    sm.step = done;
    sm.loss = r.loss;
    sm.ce = r.ce;
    sm.aux = r.aux;
    sm.lr = r.lr;
    sm.grad_norm = r.grad_norm;
    sm.tokens_seen = done * int64_t(t.global_batch) * t.seq_len;
    sm.expert_load = std::move(r.expert_load);
    if (t.eval_every > 0 && (done % t.eval_every == 0 || done == t.steps)) {
      ScopedPhase phase("eval", /*opaque=*/true);
      sm.val_loss = gpu ? evaluate([&](const int32_t* tokens, const int32_t* targets, int64_t B,
                                        int64_t S) { return gpu->validation_ce(tokens, targets, B, S); },
                                   *valid_file, cfg_, *groups.dp)
                        : evaluate(model, *valid_file, cfg_, *groups.dp);
    }
    if (cfg_.checkpoint.every > 0 && (done % cfg_.checkpoint.every == 0 || done == t.steps)) {
      ScopedPhase phase("checkpoint", /*opaque=*/true);
      CheckpointMeta meta{done, sm.tokens_seen, done * int64_t(t.global_batch), resolved};
      if (gpu) gpu->to_host(model, optim);  // the weights and AdamW state live on the GPU
      writer.submit(cfg_.checkpoint.dir,
                    take_checkpoint_snapshot(meta, model.params(), &optim, {&world_, groups.tp.get(), groups.ep.get()},
                                             writer.recycle()),
                    cfg_.checkpoint.keep);
    }
    sm.step_ms = now_ms() - t0;
    watchdog.step_finished(sm.step_ms);
    if (trace && step + 1 == trace_last) {
      Profiler::instance().set_tracing(false);
      std::string path = write_trace(Profiler::instance().take_trace(), cfg_.run.out_dir, world_);
      log_info(strformat("[profile] trace of steps %lld-%lld written to %s (open in Perfetto or chrome://tracing)",
                         (long long)trace_first, (long long)trace_last, path.c_str()));
    }
    sm.tokens_per_s = double(t.global_batch) * t.seq_len / (sm.step_ms / 1000.0);
    sm.mfu = flops_per_token * sm.tokens_per_s / (peak * 1e9);
    sm.breakdown_ms = Profiler::instance().take();
    sm.comm_bytes = Profiler::instance().take_bytes();
    sm.comm_exposed_ms = communication_ms(sm.breakdown_ms);
    sm.comm_overlapped_ms = Profiler::instance().take_overlapped_ms();
    sm.ep = cfg_.parallel.ep;
    step_log.record(sm);
    if (done % t.log_every == 0 || done == t.steps || sm.val_loss >= 0) {  // the same steps on every rank
      PhaseStats stats = reduce_phases(sm.breakdown_ms, world_);
      sm.breakdown_mean_ms = std::move(stats.mean);
      sm.breakdown_max_ms = std::move(stats.max);
      if (metrics) metrics->write(sm);
      step_log.print(sm);
    }
  }
  writer.finish();  // the last save is complete before the run counts as finished
  log_info(strformat("[trainer] finished %d steps", t.steps));
  return 0;
}

}  // namespace moe
