// FSMoE-style choice of the number of pipelined chunks of an MoE layer's expert stage under expert
// parallelism (dispatch, experts, combine; docs/cuda.md "Pipelined exchanges"), from a cost model
// fitted to online measurements.
//
// Each of the stage's three parts costs a fixed time per call plus a time per row (a token copy):
// an all-to-all exchange of n rows takes comm.at(n) = latency + per_row * n, the experts' forward on
// n rows compute.at(n), their backward backward.at(n). In C chunks every chunk carries n / C rows.
// The schedule simulated is the one the GPU model runs: all C dispatches are queued on the
// communication stream first, in order; chunk c's experts start when its rows have arrived and
// chunk c - 1's experts are done; its combine is queued on the communication stream after them and
// after the previous exchange. The backward is the same with the experts' backward. More chunks hide
// more of the exchanges behind the experts but pay each fixed cost C times; the choice minimises the
// simulated forward plus backward.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace moe {

// t(n) = latency + per_row * n, in milliseconds.
struct LinearCost {
  double latency = 0, per_row = 0;
  double at(double rows) const { return latency + per_row * rows; }
};

// Least-squares line through measured (rows, ms) points (at least two distinct row counts); a
// negative latency or slope, which measurement noise can give, is clamped to zero (refit through
// the origin when the latency would be negative).
LinearCost fit_linear_cost(const std::vector<std::pair<double, double>>& samples);

struct ChunkCostModel {
  LinearCost comm;      // one all-to-all of n rows
  LinearCost compute;   // the experts' forward on n rows
  LinearCost backward;  // the experts' backward on n rows
};

// Simulated milliseconds of the expert stage (forward, or backward when `backward`) on `rows` rows in
// `chunks` chunks, under the schedule above.
double pipelined_stage_ms(const ChunkCostModel& model, int64_t rows, int chunks, bool backward);

// The chunk count in [1, max_chunks] with the least simulated forward + backward time (the smallest
// such count on ties), never more chunks than rows.
int choose_chunk_count(const ChunkCostModel& model, int64_t rows, int max_chunks);

// One line for the log: the fitted costs and the simulated times of 1 .. max_chunks chunks.
std::string describe_chunk_choice(const ChunkCostModel& model, int64_t rows, int max_chunks);

}  // namespace moe
