// Shared helpers for the tests: random tensors, temporary directories, tiny configs.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/tensor.h"

namespace moe::test {

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale = 1.0f);
// A fresh empty directory under the build tree, removed when the test binary is re-run.
std::string temp_dir(const std::string& name);
// Writes uint16 tokens to path.
void write_tokens(const std::string& path, const std::vector<uint16_t>& tokens);
// A tiny valid config (2 layers, 4 experts) with data files under dir (written unless write_data
// is false: the ranks of an MPI test but one).
Config tiny_config(const std::string& dir, bool write_data = true);
double max_abs_diff(const float* a, const float* b, int64_t n);
// Tokens and next-token targets of micro-batch m ([n] each, ids below vocab), from a counter stream
// keyed by `name`: the same for every caller that passes the same arguments.
void random_tokens(const std::string& name, uint64_t seed, int m, int64_t n, int vocab, std::vector<int32_t>& tokens,
                   std::vector<int32_t>& targets);
// Every element of got within rel * (the largest magnitude in want) + 1e-7 of want; one gtest
// failure per tensor, naming how many elements are off and the worst one, so that a run shows
// every tensor that is off.
void expect_tensor_close(const Tensor& got, const Tensor& want, const std::string& what, double rel = 1e-4);
// ||got - want|| / ||want|| (L2, in double); NaN when an element of got is not finite.
double relative_error(const std::vector<float>& got, const std::vector<float>& want);
// The lines of a text file; the number after "key": in a JSON line (NaN when the key is absent).
std::vector<std::string> read_lines(const std::string& path);
double json_number(const std::string& json, const std::string& key);
// The message of the moe::Error that f throws, or "" when it throws none.
std::string error_of(const std::function<void()>& f);

}  // namespace moe::test
