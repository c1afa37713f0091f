// metrics.jsonl writer.
#include "train/metrics.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "train/phase_stats.h"

namespace moe {

static std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

std::string metrics_to_json(const StepMetrics& m) {
  std::string s = "{\"step\": " + std::to_string(m.step);
  s += ", \"loss\": " + num(m.loss) + ", \"ce\": " + num(m.ce) + ", \"aux\": " + num(m.aux);
  s += ", \"lr\": " + num(m.lr) + ", \"grad_norm\": " + num(m.grad_norm);
  s += ", \"tokens_per_s\": " + num(m.tokens_per_s) + ", \"step_ms\": " + num(m.step_ms) + ", \"mfu\": " + num(m.mfu);
  s += ", \"tokens_seen\": " + std::to_string(m.tokens_seen);
  if (m.val_loss >= 0) s += ", \"val_loss\": " + num(m.val_loss);
  double fwd = 0, bwd = 0;
  for (const auto& [phase, ms] : m.breakdown_ms) {
    if (phase.size() > 4 && phase.compare(phase.size() - 4, 4, "_fwd") == 0) fwd += ms;
    if (phase.size() > 4 && phase.compare(phase.size() - 4, 4, "_bwd") == 0) bwd += ms;
  }
  s += ", \"forward_ms\": " + num(fwd) + ", \"backward_ms\": " + num(bwd);
  s += ", \"comm_exposed_ms\": " + num(m.comm_exposed_ms) + ", \"comm_overlapped_ms\": " + num(m.comm_overlapped_ms);
  s += ", \"breakdown_ms\": {";
  for (size_t i = 0; i < m.breakdown_ms.size(); ++i)
    s += (i ? ", \"" : "\"") + m.breakdown_ms[i].first + "\": " + num(m.breakdown_ms[i].second);
  auto object = [&](const char* key, const std::vector<std::pair<std::string, double>>& kv) {
    s += std::string("}, \"") + key + "\": {";
    for (size_t i = 0; i < kv.size(); ++i) s += (i ? ", \"" : "\"") + kv[i].first + "\": " + num(kv[i].second);
  };
  if (!m.breakdown_mean_ms.empty()) object("breakdown_mean_ms", m.breakdown_mean_ms);
  if (!m.breakdown_max_ms.empty()) object("breakdown_max_ms", m.breakdown_max_ms);
  std::vector<std::pair<std::string, double>> gbps;
  for (const auto& [phase, bytes] : m.comm_bytes)
    for (const auto& [name, ms] : m.breakdown_ms)
      if (name == phase && ms > 0) gbps.emplace_back(phase, bytes / (ms * 1e6));
  object("comm_bytes", m.comm_bytes);
  object("comm_gb_per_s", gbps);
  std::vector<std::pair<std::string, double>> imb_expert, imb_rank;
  for (const auto& [layer, load] : m.expert_load) {
    LoadImbalance li = load_imbalance(load, m.ep);
    imb_expert.emplace_back(std::to_string(layer), li.per_expert);
    imb_rank.emplace_back(std::to_string(layer), li.per_rank);
  }
  object("imbalance_per_expert", imb_expert);
  object("imbalance_per_rank", imb_rank);
  s += "}, \"expert_load\": {";
  for (size_t i = 0; i < m.expert_load.size(); ++i) {
    s += (i ? ", \"" : "\"") + std::to_string(m.expert_load[i].first) + "\": [";
    const auto& v = m.expert_load[i].second;
    for (size_t e = 0; e < v.size(); ++e) s += (e ? ", " : "") + std::to_string(v[e]);
    s += "]";
  }
  return s + "}}";
}

MetricsWriter::MetricsWriter(const std::string& path) : out_(path, std::ios::app) {
  MOE_CHECK(out_.good(), "cannot open metrics file '" << path << "' for writing");
}

void MetricsWriter::write(const StepMetrics& m) {
  out_ << metrics_to_json(m) << '\n';
  out_.flush();
}

}  // namespace moe
