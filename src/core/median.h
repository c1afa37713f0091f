// Median of a set of timings (benchmarks report medians so one slow run does not move them).
#pragma once
#include <algorithm>
#include <vector>

#include "core/error.h"

namespace moe {

// The middle value; the mean of the two middle values for an even count.
inline double median(std::vector<double> v) {
  MOE_CHECK(!v.empty(), "median of no values");
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

}  // namespace moe
