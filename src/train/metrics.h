// metrics.jsonl writer: one JSON object per logged step (SPEC section 5).
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace moe {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0, ce = 0, aux = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0, step_ms = 0, mfu = 0;
  int64_t tokens_seen = 0;
  double val_loss = -1;  // < 0: not evaluated this step
  std::vector<std::pair<std::string, double>> breakdown_ms;                  // phase -> ms (rank 0)
  std::vector<std::pair<std::string, double>> breakdown_mean_ms, breakdown_max_ms;  // over ranks
  std::vector<std::pair<std::string, double>> comm_bytes;                    // phase -> bytes sent (rank 0)
  // Rank 0's communication: time the main thread spent in collectives and waiting for them
  // (exposed), and time non-blocking collectives ran behind compute (overlapped).
  double comm_exposed_ms = 0, comm_overlapped_ms = 0;
  int ep = 1;  // for the per-rank load imbalance
  std::vector<std::pair<int, std::vector<int64_t>>> expert_load;            // layer -> tokens per expert
};

std::string metrics_to_json(const StepMetrics& m);

class MetricsWriter {
 public:
  explicit MetricsWriter(const std::string& path);  // appends
  void write(const StepMetrics& m);

 private:
  std::ofstream out_;
};

}  // namespace moe
