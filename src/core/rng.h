// Counter-based RNG: value i of stream (seed, name) is a pure function of (seed, name, i), so any
// rank can draw any slice of a tensor's initial values and get what one rank would draw.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

namespace moe {

inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

inline uint64_t hash_name(const std::string& s) {  // FNV-1a
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

class CounterRng {
 public:
  CounterRng(uint64_t seed, uint64_t stream) : key_(mix64(seed ^ mix64(stream))) {}
  CounterRng(uint64_t seed, const std::string& stream) : CounterRng(seed, hash_name(stream)) {}

  uint64_t bits(uint64_t i) const { return mix64(key_ ^ mix64(i)); }
  // Uniform in (0, 1).
  double uniform(uint64_t i) const { return (static_cast<double>(bits(i) >> 11) + 0.5) * 0x1.0p-53; }
  // Standard normal, Box-Muller on draws 2i and 2i+1.
  double normal(uint64_t i) const {
    double u1 = uniform(2 * i), u2 = uniform(2 * i + 1);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  uint64_t key_;
};

}  // namespace moe
