// The chunk-count cost model (chunk_cost_model.h).
#include "parallel/chunk_cost_model.h"

#include <algorithm>
#include <cstdio>
#include <set>

#include "core/error.h"

namespace moe {

LinearCost fit_linear_cost(const std::vector<std::pair<double, double>>& samples) {
  std::set<double> distinct;
  for (const auto& s : samples) distinct.insert(s.first);
  MOE_CHECK(distinct.size() >= 2, "chunk cost model: a line needs measurements at two row counts at least");
  const double n = double(samples.size());
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& [x, y] : samples) sx += x, sy += y, sxx += x * x, sxy += x * y;
  LinearCost c;
  c.per_row = (n * sxy - sx * sy) / (n * sxx - sx * sx);
  c.latency = (sy - c.per_row * sx) / n;
  if (c.latency < 0) {  // through the origin: the best line with no fixed cost
    c.latency = 0;
    c.per_row = sxy / sxx;
  }
  c.per_row = std::max(0.0, c.per_row);
  return c;
}

double pipelined_stage_ms(const ChunkCostModel& model, int64_t rows, int chunks, bool backward) {
  MOE_CHECK(chunks >= 1, "chunk cost model: at least one chunk");
  const double per_chunk = double(rows) / double(chunks);
  const double exchange = model.comm.at(per_chunk);
  const double experts = (backward ? model.backward : model.compute).at(per_chunk);
  std::vector<double> arrived(size_t(chunks), 0.0);
  double comm_free = 0;  // when the communication stream is next idle
  for (int c = 0; c < chunks; ++c) arrived[size_t(c)] = comm_free += exchange;  // every dispatch first
  double experts_done = 0;
  for (int c = 0; c < chunks; ++c) {
    experts_done = std::max(experts_done, arrived[size_t(c)]) + experts;
    comm_free = std::max(comm_free, experts_done) + exchange;  // its combine
  }
  return comm_free;
}

int choose_chunk_count(const ChunkCostModel& model, int64_t rows, int max_chunks) {
  int best = 1;
  double best_ms = 0;
  for (int c = 1; c <= std::max(1, max_chunks); ++c) {
    if (c > 1 && c > rows) break;
    const double ms = pipelined_stage_ms(model, rows, c, false) + pipelined_stage_ms(model, rows, c, true);
    if (c == 1 || ms < best_ms) best = c, best_ms = ms;
  }
  return best;
}

std::string describe_chunk_choice(const ChunkCostModel& model, int64_t rows, int max_chunks) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "%lld rows; all-to-all %.3f ms + %.3g ms/row, experts %.3f + %.3g ms/row, backward %.3f + %.3g "
                "ms/row; forward + backward ms by chunks:",
                static_cast<long long>(rows), model.comm.latency, model.comm.per_row, model.compute.latency,
                model.compute.per_row, model.backward.latency, model.backward.per_row);
  std::string out = buf;
  for (int c = 1; c <= max_chunks && (c == 1 || c <= rows); ++c) {
    std::snprintf(buf, sizeof buf, " %d: %.3f", c,
                  pipelined_stage_ms(model, rows, c, false) + pipelined_stage_ms(model, rows, c, true));
    out += buf;
  }
  return out + "; chosen " + std::to_string(choose_chunk_count(model, rows, max_chunks));
}

}  // namespace moe
