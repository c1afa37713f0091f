// Step log lines and breakdown tables.
#include "train/step_log.h"

#include <algorithm>
#include <vector>

#include "core/logging.h"

namespace moe {

void StepLog::record(const StepMetrics& m) {
  for (const auto& [phase, ms] : m.breakdown_ms) phase_sum_[phase] += ms;
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
  double covered = 0;
  std::string table = strformat("[profile] step-time breakdown, mean of %d steps (%.1f ms/step):\n", steps_,
                                step_ms_sum_ / steps_);
  for (const auto& [phase, sum] : rows) {
    covered += sum;
    table += strformat("  %-20s %9.2f ms %6.1f%%\n", phase.c_str(), sum / steps_, 100.0 * sum / step_ms_sum_);
  }
  table += strformat("  %-20s %9.2f ms %6.1f%%\n", "other", (step_ms_sum_ - covered) / steps_,
                     100.0 * (step_ms_sum_ - covered) / step_ms_sum_);
  for (const auto& [layer, load] : m.expert_load) {
    double total = 0, mx = 0;
    for (auto c : load) {
      total += double(c);
      mx = std::max(mx, double(c));
    }
    double mean = load.empty() ? 0 : total / double(load.size());
    table += strformat("  layer %d expert load max/mean %.2f\n", layer, mean > 0 ? mx / mean : 0.0);
  }
  log_info(table);
  phase_sum_.clear();
  step_ms_sum_ = 0;
  steps_ = 0;
}

}  // namespace moe
