// Every Communicator collective over MPI against a reference computed from the rank numbers, and
// the TokenDispatcher round trip (including ranks that receive no rows).
#include <gtest/gtest.h>

#include <numeric>

#include "parallel/communicator.h"
#include "parallel/token_dispatcher.h"

namespace moe {

static float value(int rank, int64_t i) { return float(rank * 1000 + i) * 0.5f; }

class Collectives : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> world = make_mpi_world_communicator();
  int r = world->rank(), n = world->size();
};

TEST_F(Collectives, AllReduceSumAllTypesAndAsync) {
  std::vector<float> f(5);
  std::vector<double> d(5);
  std::vector<int64_t> k(5);
  for (int i = 0; i < 5; ++i) f[i] = value(r, i), d[i] = value(r, i), k[i] = r * 10 + i;
  world->all_reduce_sum(f.data(), 5);
  world->all_reduce_sum(d.data(), 5);
  world->all_reduce_sum(k.data(), 5);
  std::vector<float> g(5);
  for (int i = 0; i < 5; ++i) g[i] = value(r, i);
  auto pending = world->all_reduce_sum_async(g.data(), 5);
  pending->wait();
  for (int i = 0; i < 5; ++i) {
    double want = 0;
    int64_t wk = 0;
    for (int q = 0; q < n; ++q) want += value(q, i), wk += q * 10 + i;
    EXPECT_FLOAT_EQ(f[i], float(want));
    EXPECT_DOUBLE_EQ(d[i], want);
    EXPECT_EQ(k[i], wk);
    EXPECT_FLOAT_EQ(g[i], float(want));
  }
}

TEST_F(Collectives, BroadcastAllGatherReduceScatter) {
  int64_t x = r == n - 1 ? 42 : -1;
  world->broadcast(&x, sizeof(x), n - 1);
  EXPECT_EQ(x, 42);
  std::vector<float> mine = {value(r, 0), value(r, 1)}, all(2 * n);
  world->all_gather(mine.data(), all.data(), 2);
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(all[2 * q], value(q, 0));
    EXPECT_EQ(all[2 * q + 1], value(q, 1));
  }
  std::vector<float> in(3 * n), out(3);
  for (int i = 0; i < 3 * n; ++i) in[i] = value(r, i);
  world->reduce_scatter_sum(in.data(), out.data(), 3);
  for (int i = 0; i < 3; ++i) {
    float want = 0;
    for (int q = 0; q < n; ++q) want += value(q, r * 3 + i);
    EXPECT_FLOAT_EQ(out[i], want);
  }
}

TEST_F(Collectives, AllToAllVWithEmptyMessages) {
  // rank r sends (r + q) % 3 floats to rank q (zero for some pairs)
  std::vector<int64_t> sc(n), rc(n);
  for (int q = 0; q < n; ++q) sc[q] = (r + q) % 3, rc[q] = (q + r) % 3;
  std::vector<float> send, recv(std::accumulate(rc.begin(), rc.end(), int64_t(0)));
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < sc[q]; ++i) send.push_back(float(r * 100 + q * 10 + i));
  world->all_to_all_v(send.data(), sc.data(), recv.data(), rc.data());
  size_t o = 0;
  for (int q = 0; q < n; ++q)
    for (int64_t i = 0; i < rc[q]; ++i) EXPECT_EQ(recv[o++], float(q * 100 + r * 10 + i));
  std::vector<int64_t> a(2 * n), b(2 * n);
  for (int q = 0; q < n; ++q) a[2 * q] = r, a[2 * q + 1] = q;
  world->all_to_all(a.data(), b.data(), 2);
  for (int q = 0; q < n; ++q) {
    EXPECT_EQ(b[2 * q], q);
    EXPECT_EQ(b[2 * q + 1], r);
  }
}

TEST_F(Collectives, SplitFormsGroupsOrderedByKey) {
  auto g = world->split(r % 2, -r);  // reversed order inside each group
  EXPECT_EQ(g->size(), (n + 1 - r % 2) / 2);
  int64_t sum = r;
  g->all_reduce_sum(&sum, 1);
  int64_t want = 0;
  for (int q = r % 2; q < n; q += 2) want += q;
  EXPECT_EQ(sum, want);
  int top = r;
  g->broadcast(&top, sizeof(top), 0);  // rank 0 of the group is the largest world rank in it
  int largest = r % 2;
  for (int q = r % 2; q < n; q += 2) largest = q;
  EXPECT_EQ(top, largest);
}

TEST_F(Collectives, DispatchCombineRoundTripAndPlacement) {
  const int64_t El = 2, E = El * n, D = 3;
  // rank r has (r + e) % 3 rows for global expert e; rank 0 sends nothing to the last rank
  std::vector<int64_t> offsets(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    int64_t rows = (r == 0 && e >= E - El) ? 0 : (r + e) % 3;
    offsets[e + 1] = offsets[e] + rows;
  }
  std::vector<float> rows(offsets[E] * D);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i)
      for (int64_t c = 0; c < D; ++c) rows[i * D + c] = float(r * 10000 + e * 100 + (i - offsets[e]) * 10 + c);
  TokenDispatcher disp(world.get(), E, D);
  disp.plan(offsets.data());
  std::vector<float> local(disp.local_rows() * D), back(rows.size());
  disp.dispatch(rows.data(), local.data());
  // local rows: group q * El + e holds, in the source's row order, what rank q sent to my expert e
  const int64_t* lo = disp.local_offsets();
  ASSERT_EQ(disp.num_local_groups(), n * El);
  for (int q = 0; q < n; ++q)
    for (int64_t e = 0; e < El; ++e) {
      int64_t g = r * El + e, i = lo[q * El + e];
      int64_t cnt = (q == 0 && g >= E - El) ? 0 : (q + g) % 3;
      for (int64_t j = 0; j < cnt; ++j, ++i) EXPECT_EQ(local[i * D], float(q * 10000 + g * 100 + j * 10));
      EXPECT_EQ(i, lo[q * El + e + 1]);
    }
  for (auto& v : local) v += 0.5f;  // an "expert" that adds 0.5
  disp.combine(local.data(), back.data());
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(back[i], rows[i] + 0.5f);
}

}  // namespace moe
