// Read-only memory-mapped token file: raw little-endian uint16 or uint32 tokens (SPEC section 3).
#pragma once
#include <cstdint>
#include <string>

namespace moe {

class TokenFile {
 public:
  // Maps `path`; throws naming the file when it is missing, empty, of a size that is not a whole
  // number of tokens, or holds fewer than seq_len + 1 tokens.
  TokenFile(const std::string& path, const std::string& token_dtype, int64_t seq_len);
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  int64_t num_tokens() const { return num_tokens_; }
  // N = (num_tokens - 1) / S samples of S + 1 tokens; sample j starts at token j * S.
  int64_t num_samples() const { return (num_tokens_ - 1) / seq_len_; }
  // Copies sample j: inputs [S] and targets [S] (the same tokens shifted by one).
  void read_sample(int64_t j, int32_t* inputs, int32_t* targets) const;
  // Checks every token is < vocab_size; throws naming the file, position and value.
  void check_vocab(int64_t vocab_size) const;
  const std::string& path() const { return path_; }

 private:
  uint32_t token(int64_t i) const;

  std::string path_;
  int64_t seq_len_;
  int bytes_per_token_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  int64_t num_tokens_ = 0;
};

}  // namespace moe
