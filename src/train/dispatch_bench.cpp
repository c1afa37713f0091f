// Dispatch/combine micro-benchmark.
#include "train/dispatch_bench.h"

#include <algorithm>
#include <vector>

#include "core/profiler.h"
#include "core/rng.h"
#include "parallel/token_dispatcher.h"

namespace moe {

DispatchTiming time_dispatch_combine(Communicator& ep, int64_t num_experts, int64_t rows, int64_t D, int reps) {
  const int P = ep.size();
  CounterRng rng(7, "dispatch-bench-" + std::to_string(ep.rank()));
  std::vector<int64_t> offsets(num_experts + 1, 0);
  for (int64_t i = 0; i < rows; ++i) offsets[1 + rng.bits(uint64_t(i)) % uint64_t(num_experts)]++;
  for (int64_t e = 0; e < num_experts; ++e) offsets[e + 1] += offsets[e];
  std::vector<float> x(rows * D, 1.0f), y(rows * D);
  TokenDispatcher disp(&ep, num_experts, D);
  // the same per-peer byte counts for the bare exchange
  const int64_t El = num_experts / P;
  std::vector<int64_t> send(P), recv(P);
  for (int p = 0; p < P; ++p) send[p] = (offsets[(p + 1) * El] - offsets[p * El]) * D;
  std::vector<int64_t> counts_s(P), counts_r(P);
  for (int p = 0; p < P; ++p) counts_s[p] = send[p];
  ep.all_to_all(counts_s.data(), counts_r.data(), 1);
  for (int p = 0; p < P; ++p) recv[p] = counts_r[p];
  int64_t total_recv = 0;
  for (auto r : recv) total_recv += r;
  std::vector<float> staging(total_recv), local;

  // Median over repetitions (robust to a scheduler hiccup), then the slowest rank.
  auto time_it = [&](auto&& body) {
    body();  // warm-up
    std::vector<double> times;
    for (int r = 0; r < reps; ++r) {
      ep.barrier();
      double t0 = now_ms();
      body();
      times.push_back(now_ms() - t0);
    }
    std::nth_element(times.begin(), times.begin() + reps / 2, times.end());
    double ms = times[reps / 2];
    double worst = ms;
    std::vector<float> all(P);
    float mine = float(ms);
    ep.all_gather(&mine, all.data(), 1);
    for (float v : all) worst = std::max(worst, double(v));
    return worst;
  };
  DispatchTiming out;
  out.dispatch_combine_ms = time_it([&] {
    disp.plan(offsets.data());
    local.resize(size_t(disp.local_rows() * D));
    disp.dispatch(x.data(), local.data());
    disp.combine(local.data(), y.data());
  });
  out.bare_ms = time_it([&] {
    ep.all_to_all_v(x.data(), send.data(), staging.data(), recv.data());
    ep.all_to_all_v(staging.data(), recv.data(), y.data(), send.data());
  });
  return out;
}

}  // namespace moe
