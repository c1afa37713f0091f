// The chunk-count cost model (src/parallel/chunk_cost_model.h): the line fits, the simulated
// schedule against times worked out by hand, and the choices it makes at the extremes.
#include <gtest/gtest.h>

#include "parallel/chunk_cost_model.h"
#include "test_util.h"

namespace moe {
namespace {

TEST(ChunkCostModel, FitsLinesAndClampsWhatNoiseMakesNegative) {
  const LinearCost c = fit_linear_cost({{1000, 0.05 + 2.0}, {8000, 0.05 + 16.0}, {4000, 0.05 + 8.0}});
  EXPECT_NEAR(c.latency, 0.05, 1e-9);
  EXPECT_NEAR(c.per_row, 0.002, 1e-12);
  // a line whose intercept comes out negative: refit through the origin
  const LinearCost o = fit_linear_cost({{100, 0.5}, {200, 1.5}});
  EXPECT_EQ(o.latency, 0.0);
  EXPECT_NEAR(o.per_row, (100 * 0.5 + 200 * 1.5) / (100.0 * 100 + 200.0 * 200), 1e-12);
  // falling with the rows (noise): no negative slope
  EXPECT_EQ(fit_linear_cost({{100, 2.0}, {200, 1.0}}).per_row, 0.0);
  EXPECT_NE(test::error_of([] {
              fit_linear_cost({{100, 1.0}, {100, 2.0}});
            }).find("two row counts"),
            std::string::npos);
}

TEST(ChunkCostModel, SimulatesTheScheduleOfTheGpuModel) {
  ChunkCostModel m;
  m.comm = {0.0, 0.01};      // 100 rows: 1 ms per exchange
  m.compute = {0.0, 0.02};   // 2 ms of experts
  m.backward = {0.0, 0.04};  // 4 ms of backward
  // one chunk: dispatch, experts, combine in a row
  EXPECT_DOUBLE_EQ(pipelined_stage_ms(m, 100, 1, false), 1 + 2 + 1);
  EXPECT_DOUBLE_EQ(pipelined_stage_ms(m, 100, 1, true), 1 + 4 + 1);
  // two chunks: dispatches end at 0.5 and 1; experts 0.5-1.5 and 1.5-2.5; combines 1.5-2 and 2.5-3
  EXPECT_DOUBLE_EQ(pipelined_stage_ms(m, 100, 2, false), 3.0);
  // backward: experts 0.5-2.5 and 2.5-4.5; combines 2.5-3 and 4.5-5
  EXPECT_DOUBLE_EQ(pipelined_stage_ms(m, 100, 2, true), 5.0);
  // a fixed cost per exchange, 4 chunks of 25 rows: exchanges of 0.1 + 0.25 ms, experts of 0.5 ms.
  // Dispatches end at 0.35, 0.7, 1.05, 1.4; experts 0.35-0.85, 0.85-1.35, 1.35-1.85, 1.85-2.35; the
  // dispatches hold the stream until 1.4, then the combines run 1.4-1.75, 1.75-2.1, 2.1-2.45, 2.45-2.8
  m.comm = {0.1, 0.01};
  m.compute = {0.0, 0.02};
  EXPECT_NEAR(pipelined_stage_ms(m, 100, 4, false), 2.8, 1e-12);
}

TEST(ChunkCostModel, ChoosesFewChunksWhenFixedCostsDominateAndManyWhenRowsDo) {
  ChunkCostModel m;
  m.compute = {0.0, 1e-5};
  m.backward = {0.0, 2e-5};
  m.comm = {5.0, 1e-6};  // exchanges nearly all latency, longer than the experts: chunking only multiplies it
  EXPECT_EQ(choose_chunk_count(m, 10000, 8), 1);
  m.compute = {0.0, 0.001};
  m.backward = {0.0, 0.002};
  m.comm = {0.0, 0.001};  // no fixed costs: the more chunks the more overlap
  EXPECT_EQ(choose_chunk_count(m, 10000, 8), 8);
  EXPECT_EQ(choose_chunk_count(m, 3, 8), 3);  // never more chunks than rows
  // in between: the count with the least simulated time, found by trying every count
  m.comm = {0.2, 0.001};
  m.compute = {0.05, 0.0015};
  int best = 1;
  for (int c = 2; c <= 8; ++c)
    if (pipelined_stage_ms(m, 4000, c, false) + pipelined_stage_ms(m, 4000, c, true) <
        pipelined_stage_ms(m, 4000, best, false) + pipelined_stage_ms(m, 4000, best, true))
      best = c;
  EXPECT_GT(best, 1);
  EXPECT_LT(best, 8);
  EXPECT_EQ(choose_chunk_count(m, 4000, 8), best);
  EXPECT_NE(describe_chunk_choice(m, 4000, 8).find("chosen " + std::to_string(best)), std::string::npos);
}

}  // namespace
}  // namespace moe
