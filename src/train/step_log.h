// Console/train.log lines for training steps, and the per-phase breakdown table every
// profile.breakdown_every steps (mean over the steps since the previous table).
#pragma once
#include <map>
#include <string>

#include "core/config.h"
#include "train/metrics.h"

namespace moe {

class StepLog {
 public:
  explicit StepLog(const Config& cfg) : cfg_(cfg) {}
  void record(const StepMetrics& m);  // every step: accumulates the breakdown
  void print(const StepMetrics& m);   // a logged step: one line, and the table when due

 private:
  const Config& cfg_;
  std::map<std::string, double> phase_sum_;
  double step_ms_sum_ = 0, exposed_sum_ = 0, overlapped_sum_ = 0;  // since the last table
  int steps_ = 0;
};

}  // namespace moe
