// Step log lines and breakdown tables.
#include "train/step_log.h"

#include <algorithm>
#include <vector>

#include "core/logging.h"
#include "train/phase_stats.h"

namespace moe {

void StepLog::record(const StepMetrics& m) {
  for (const auto& [phase, ms] : m.breakdown_ms) phase_sum_[phase] += ms;
  exposed_sum_ += m.comm_exposed_ms;
  overlapped_sum_ += m.comm_overlapped_ms;
  step_ms_sum_ += m.step_ms;
  ++steps_;
}

void StepLog::print(const StepMetrics& m) {
  std::string line = strformat("[train] step %lld/%d | loss %.4f | ce %.4f | aux %.4f | lr %.3e | gnorm %.3f | "
                               "%.0f tok/s | mfu %.1f%% | %.0f ms",
                               (long long)m.step, cfg_.train.steps, m.loss, m.ce, m.aux, m.lr, m.grad_norm,
                               m.tokens_per_s, 100.0 * m.mfu, m.step_ms);
  if (m.val_loss >= 0) line += strformat(" | val %.4f", m.val_loss);
  log_info(line);

  const int every = cfg_.profile.breakdown_every;
  if (every <= 0 || m.step % every != 0 || steps_ == 0) return;
  std::vector<std::pair<std::string, double>> rows(phase_sum_.begin(), phase_sum_.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  auto lookup = [](const std::vector<std::pair<std::string, double>>& kv, const std::string& k) {
    for (const auto& [name, v] : kv)
      if (name == k) return v;
    return 0.0;
  };
  double covered = 0;
  std::string table = strformat("[profile] step-time breakdown: rank 0 mean of %d steps (%.1f ms/step); "
                                "mean and max over ranks of step %lld:\n",
                                steps_, step_ms_sum_ / steps_, (long long)m.step);
  table += strformat("  %-20s %10s %7s %10s %10s %12s\n", "phase", "rank0 ms", "share", "mean ms", "max ms", "GB/s");
  for (const auto& [phase, sum] : rows) {
    covered += sum;
    double bytes = lookup(m.comm_bytes, phase), ms = lookup(m.breakdown_ms, phase);
    std::string bw = bytes > 0 && ms > 0 ? strformat("%.2f", bytes / (ms * 1e6)) : "";
    table += strformat("  %-20s %10.2f %6.1f%% %10.2f %10.2f %12s\n", phase.c_str(), sum / steps_,
                       100.0 * sum / step_ms_sum_, lookup(m.breakdown_mean_ms, phase), lookup(m.breakdown_max_ms, phase),
                       bw.c_str());
  }
  table += strformat("  %-20s %10.2f %6.1f%%\n", "other", (step_ms_sum_ - covered) / steps_,
                     100.0 * (step_ms_sum_ - covered) / step_ms_sum_);
  table += strformat("  communication: %.2f ms/step exposed (%.1f%% of the step), %.2f ms/step overlapped with compute\n",
                     exposed_sum_ / steps_, 100.0 * exposed_sum_ / step_ms_sum_, overlapped_sum_ / steps_);
  for (const auto& [layer, load] : m.expert_load) {
    LoadImbalance li = load_imbalance(load, m.ep);
    table += strformat("  layer %d load max/mean: %.2f per expert, %.2f per expert-parallel rank\n", layer,
                       li.per_expert, li.per_rank);
  }
  log_info(table);
  phase_sum_.clear();
  step_ms_sum_ = exposed_sum_ = overlapped_sum_ = 0;
  steps_ = 0;
}

}  // namespace moe
