// Profile statistics over ranks and experts.
#include "train/phase_stats.h"

#include "core/profiler.h"

#include <algorithm>
#include <sstream>

namespace moe {

double communication_ms(const PhaseTimes& phases) {
  double ms = 0;
  for (const auto& [name, t] : phases)
    if (is_communication_phase(name)) ms += t;
  return ms;
}

PhaseStats reduce_phases(const PhaseTimes& mine, Communicator& world) {
  // Rank 0's phase names, in its order, define the rows.
  std::string names;
  if (world.rank() == 0)
    for (const auto& [name, ms] : mine) names += name + "\n";
  int64_t len = int64_t(names.size());
  world.broadcast(&len, sizeof(len), 0);
  names.resize(size_t(len));
  if (len > 0) world.broadcast(names.data(), len, 0);
  std::vector<std::string> rows;
  std::istringstream in(names);
  for (std::string n; std::getline(in, n);) rows.push_back(n);
  std::vector<double> sum(rows.size(), 0.0);
  std::vector<float> mx(rows.size(), 0.0f);
  for (size_t i = 0; i < rows.size(); ++i)
    for (const auto& [name, ms] : mine)
      if (name == rows[i]) sum[i] = ms, mx[i] = float(ms);
  world.all_reduce_sum(sum.data(), int64_t(sum.size()));
  world.all_reduce_max(mx.data(), int64_t(mx.size()));
  PhaseStats out;
  for (size_t i = 0; i < rows.size(); ++i) {
    out.mean.emplace_back(rows[i], sum[i] / world.size());
    out.max.emplace_back(rows[i], double(mx[i]));
  }
  return out;
}

LoadImbalance load_imbalance(const std::vector<int64_t>& load, int ep) {
  LoadImbalance r;
  if (load.empty()) return r;
  auto ratio = [](const std::vector<double>& v) {
    double total = 0, mx = 0;
    for (double x : v) total += x, mx = std::max(mx, x);
    return total > 0 ? mx / (total / double(v.size())) : 0.0;
  };
  std::vector<double> experts(load.begin(), load.end()), ranks(std::max(1, ep), 0.0);
  const size_t per = load.size() / ranks.size();
  for (size_t e = 0; e < load.size(); ++e) ranks[std::min(ranks.size() - 1, e / std::max<size_t>(1, per))] += double(load[e]);
  r.per_expert = ratio(experts);
  r.per_rank = ratio(ranks);
  return r;
}

}  // namespace moe
