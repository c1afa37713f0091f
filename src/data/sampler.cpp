// Sampler implementation.
#include "data/sampler.h"

#include <string>

#include "core/error.h"
#include "core/rng.h"

namespace moe {

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  CounterRng rng(seed, "data-epoch-" + std::to_string(epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = int64_t(rng.bits(uint64_t(i)) % uint64_t(i + 1));
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

Sampler::Sampler(int64_t num_samples, int64_t global_batch, bool shuffle, uint64_t seed)
    : N_(num_samples), B_(global_batch), shuffle_(shuffle), seed_(seed) {
  MOE_CHECK(N_ > 0, "sampler over an empty data set");
}

const std::vector<int64_t>& Sampler::permutation(int64_t epoch) {
  if (epoch != cached_epoch_) {
    perm_ = epoch_permutation(N_, seed_, epoch);
    cached_epoch_ = epoch;
  }
  return perm_;
}

int64_t Sampler::sample_at(int64_t position) {
  int64_t i = position % N_;
  return shuffle_ ? permutation(position / N_)[i] : i;
}

std::vector<int64_t> Sampler::micro_batch(int64_t step, int dp_rank, int dp, int m, int micro_batch) {
  const int64_t per_rank = B_ / dp;
  const int64_t first = step * B_ + dp_rank * per_rank + int64_t(m) * micro_batch;
  std::vector<int64_t> out(micro_batch);
  for (int i = 0; i < micro_batch; ++i) out[i] = sample_at(first + i);
  return out;
}

}  // namespace moe
