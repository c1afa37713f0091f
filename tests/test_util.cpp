// Shared test helpers.
#include "test_util.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include "core/error.h"
#include "core/rng.h"

namespace moe::test {

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale) {
  CounterRng rng(seed, "test");
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = float(rng.normal(uint64_t(i))) * scale;
  return v;
}

std::string temp_dir(const std::string& name) {
  auto p = std::filesystem::path(MOE_BINARY_DIR) / "test_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

void write_tokens(const std::string& path, const std::vector<uint16_t>& tokens) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(tokens.data()), std::streamsize(tokens.size() * 2));
}

Config tiny_config(const std::string& dir, bool write_data) {
  // Text with structure so the loss can fall: a repeated pangram with counters.
  std::vector<uint16_t> train, valid;
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the quick brown fox " + std::to_string(i % 7) + " jumps; ";
  for (unsigned char c : text) train.push_back(c);
  for (size_t i = 0; i < 2000; ++i) valid.push_back(uint16_t((unsigned char)text[i]));
  if (write_data) {
    write_tokens(dir + "/train.bin", train);
    write_tokens(dir + "/valid.bin", valid);
  }
  std::string yaml = R"(
run: {name: tiny, seed: 7}
model:
  vocab_size: 256
  d_model: 32
  n_layers: 2
  n_heads: 4
  n_kv_heads: 2
  ffn_hidden: 48
  max_seq_len: 16
  moe: {num_experts: 4, top_k: 2, expert_hidden: 24, z_loss_coef: 0.001}
train: {seq_len: 16, global_batch: 8, micro_batch: 4, steps: 6, log_every: 1}
optim: {lr: 0.003, warmup_steps: 2}
data: {shuffle: true}
)";
  Config c = parse_config(yaml, "tiny.yaml");
  c.run.out_dir = dir + "/out";
  c.data.train = dir + "/train.bin";
  c.data.valid = dir + "/valid.bin";
  c.checkpoint.dir = dir + "/ckpt";
  c.finalize(1);
  return c;
}

double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return NAN;
    const double d = double(got[i]) - double(want[i]);
    num += d * d, den += double(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

double json_number(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\": ([-0-9.e+]+)"))) return NAN;
  return std::stod(m[1]);
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, double(std::fabs(a[i] - b[i])));
  return m;
}

void expect_tensor_close(const Tensor& got, const Tensor& want, const std::string& what, double rel) {
  double scale = 0, worst = 0;
  int64_t bad = 0, at = 0;
  for (int64_t i = 0; i < want.numel(); ++i) scale = std::max(scale, double(std::fabs(want.data()[i])));
  const double tol = rel * scale + 1e-7;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = std::fabs(double(got.data()[i]) - double(want.data()[i]));
    if (!(d <= tol)) ++bad;
    if (!(d <= worst)) worst = d, at = i;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << want.numel() << " elements off; worst at " << at << ": "
                    << got.data()[at] << " vs " << want.data()[at] << " (largest magnitude " << scale << ")";
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

void random_tokens(const std::string& name, uint64_t seed, int m, int64_t n, int vocab, std::vector<int32_t>& tokens,
                   std::vector<int32_t>& targets) {
  CounterRng rng(seed, name);
  tokens.resize(size_t(n));
  targets.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    tokens[i] = int32_t(rng.bits(uint64_t(m * 1000 + i)) % uint64_t(vocab));
    targets[i] = int32_t(rng.bits(uint64_t(m * 1000 + i + 500)) % uint64_t(vocab));
  }
}

}  // namespace moe::test
