// Fletcher-32 as HDF5 defines it, restated block by block so the compiler can vectorise it.
//
// HDF5's loop, per block of n <= 360 words w_0..w_{n-1}:   sum1 += w_i; sum2 += sum1;
// which is, in the same modulo-2^32 arithmetic:
//   sum2 += n * sum1_start + sum_i (n - i) * w_i;   sum1 += sum_i w_i
// followed by the same 16-bit folds at the same points, so the result is identical.
#include "train/fletcher32.h"

namespace moe {
namespace {

constexpr size_t kBlockWords = 360;

inline uint32_t fold(uint32_t s) { return (s & 0xffffu) + (s >> 16); }

}  // namespace

uint32_t fletcher32(const void* data_in, size_t bytes) {
  const unsigned char* data = static_cast<const unsigned char*>(data_in);
  size_t words = bytes / 2;
  uint32_t sum1 = 0, sum2 = 0;
  while (words) {
    const uint32_t n = uint32_t(words > kBlockWords ? kBlockWords : words);
    uint32_t plain = 0, weighted = 0;
    for (uint32_t i = 0; i < n; ++i) {
      const uint32_t w = (uint32_t(data[2 * i]) << 8) | uint32_t(data[2 * i + 1]);
      plain += w;
      weighted += (n - i) * w;
    }
    sum2 += n * sum1 + weighted;
    sum1 += plain;
    sum1 = fold(sum1);
    sum2 = fold(sum2);
    data += 2 * size_t(n);
    words -= n;
  }
  if (bytes % 2) {  // odd length: the last byte is the high half of a word
    sum1 += uint32_t(*data) << 8;
    sum2 += sum1;
    sum1 = fold(sum1);
    sum2 = fold(sum2);
  }
  sum1 = fold(sum1);
  sum2 = fold(sum2);
  return (sum2 << 16) | sum1;
}

size_t append_fletcher32(unsigned char* chunk, size_t bytes) {
  const uint32_t c = fletcher32(chunk, bytes);
  for (int k = 0; k < 4; ++k) chunk[bytes + k] = static_cast<unsigned char>(c >> (8 * k));
  return bytes + 4;
}

bool fletcher32_matches(const unsigned char* chunk, size_t stored_bytes) {
  if (stored_bytes < 4) return false;
  const size_t bytes = stored_bytes - 4;
  uint32_t stored = 0;
  for (int k = 0; k < 4; ++k) stored |= uint32_t(chunk[bytes + k]) << (8 * k);
  return stored == fletcher32(chunk, bytes);
}

}  // namespace moe
