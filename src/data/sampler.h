// Layout-invariant sampler (SPEC section 3): which samples each optimizer step, data-parallel rank
// and micro-batch reads. Step t covers global positions t*B .. t*B+B-1; position p is sample p mod N
// (shuffle off) or perm_e[p mod N] with e = p / N the epoch and perm_e a permutation seeded by
// (seed, e) (shuffle on). Rank r takes positions [r*B/dp, (r+1)*B/dp) of the step; micro-batch m the
// m-th run of micro_batch inside that slice.
#pragma once
#include <cstdint>
#include <vector>

namespace moe {

class Sampler {
 public:
  Sampler(int64_t num_samples, int64_t global_batch, bool shuffle, uint64_t seed);
  int64_t sample_at(int64_t position);  // position in the infinite stream -> sample index
  // Sample indices for (step, dp rank of dp, micro-batch m of size micro_batch).
  std::vector<int64_t> micro_batch(int64_t step, int dp_rank, int dp, int m, int micro_batch);

 private:
  const std::vector<int64_t>& permutation(int64_t epoch);

  int64_t N_, B_;
  bool shuffle_;
  uint64_t seed_;
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> perm_;
};

// Fisher-Yates permutation of [0, n) drawn from CounterRng(seed, "data-epoch-<epoch>").
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace moe
