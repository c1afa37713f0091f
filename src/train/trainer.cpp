// Trainer loop.
#include "train/trainer.h"

#include "parallel/layout.h"

#include <filesystem>
#include <optional>

#include "core/error.h"
#include "core/logging.h"
#include "core/profiler.h"
#include "data/sampler.h"
#include "data/token_file.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/flops.h"
#include "train/metrics.h"
#include "train/step_log.h"
#include "train/train_step.h"
#include "train/watchdog.h"

namespace moe {
namespace fs = std::filesystem;

Trainer::Trainer(const Config& cfg, Communicator& world) : cfg_(cfg), world_(world) {}

int Trainer::run() {
  const auto& t = cfg_.train;
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
  int64_t start_step = 0;
  std::optional<std::string> resume_path;
  if (cfg_.checkpoint.resume == "auto") {
    resume_path = find_latest_checkpoint(cfg_.checkpoint.dir);
  } else if (cfg_.checkpoint.resume != "never") {
    resume_path = cfg_.checkpoint.resume;
  }
  if (resume_path) {
    CheckpointMeta meta = load_checkpoint(*resume_path, model.params(), &optim);
    start_step = meta.step;
    MOE_CHECK(optim.step_count() == start_step, "checkpoint '" << *resume_path << "': /optim step "
                                                               << optim.step_count() << " differs from step " << start_step);
    log_info(strformat("[checkpoint] resumed from %s at step %lld", resume_path->c_str(), (long long)start_step));
  } else if (!cfg_.checkpoint.init_from.empty()) {
    load_checkpoint(cfg_.checkpoint.init_from, model.params(), nullptr);
    log_info("[checkpoint] model initialised from " + cfg_.checkpoint.init_from);
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
  // Every rank measures its own peak at the same time (the contention training will see); MFU is
  // against their sum.
  double peak = measure_gemm_peak_gflops(0.5);
  world_.all_reduce_sum(&peak, 1);
  const double flops_per_token = training_flops_per_token(cfg_.model, t.seq_len, model.active_matmul_params());
  log_info(strformat("[trainer] fp32 GEMM peak %.1f GFLOP/s (all ranks); %.1f MFLOP per token; steps %lld..%d",
                     peak, flops_per_token / 1e6, (long long)start_step + 1, t.steps));
  std::unique_ptr<MetricsWriter> metrics;
  if (rank == 0) metrics = std::make_unique<MetricsWriter>((fs::path(cfg_.run.out_dir) / "metrics.jsonl").string());
  StepLog step_log(cfg_);
  Profiler::instance().take();
  Watchdog watchdog(world_);

  for (int64_t step = start_step; step < t.steps; ++step) {
    const double t0 = now_ms();
    watchdog.step_started(step);
    StepResult r = runner.run(step, [&](int m, int32_t* tokens, int32_t* targets) {
      auto samples = sampler.micro_batch(step, dp_rank, dp, m, t.micro_batch);
      for (size_t i = 0; i < samples.size(); ++i)
        train_file.read_sample(samples[i], tokens + i * t.seq_len, targets + i * t.seq_len);
    });
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
      ScopedPhase phase("eval");
      sm.val_loss = evaluate(model, *valid_file, cfg_, *groups.dp);
    }
    if (cfg_.checkpoint.every > 0 && (done % cfg_.checkpoint.every == 0 || done == t.steps)) {
      ScopedPhase phase("checkpoint");
      CheckpointMeta meta{done, sm.tokens_seen, done * int64_t(t.global_batch), resolved};
      std::string path = save_checkpoint(cfg_.checkpoint.dir, meta, model.params(), &optim, cfg_.checkpoint.keep,
                                         {&world_, groups.tp.get(), groups.ep.get()});
      log_info("[checkpoint] saved " + path);
    }
    sm.step_ms = now_ms() - t0;
    watchdog.step_finished(sm.step_ms);
    sm.tokens_per_s = double(t.global_batch) * t.seq_len / (sm.step_ms / 1000.0);
    sm.mfu = flops_per_token * sm.tokens_per_s / (peak * 1e9);
    sm.breakdown_ms = Profiler::instance().take();
    step_log.record(sm);
    if (done % t.log_every == 0 || done == t.steps || sm.val_loss >= 0) {
      if (metrics) metrics->write(sm);
      step_log.print(sm);
    }
  }
  log_info(strformat("[trainer] finished %d steps", t.steps));
  return 0;
}

}  // namespace moe
