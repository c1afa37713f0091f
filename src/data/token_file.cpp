// Memory-mapped token file.
#include "data/token_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace moe {

TokenFile::TokenFile(const std::string& path, const std::string& token_dtype, int64_t seq_len)
    : path_(path), seq_len_(seq_len), bytes_per_token_(token_dtype == "uint32" ? 4 : 2) {
  int fd = ::open(path.c_str(), O_RDONLY);
  MOE_CHECK(fd >= 0, "token file '" << path << "' cannot be opened: " << std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    MOE_THROW("token file '" << path << "' cannot be read: " << std::strerror(errno));
  }
  map_bytes_ = size_t(st.st_size);
  if (map_bytes_ == 0) {
    ::close(fd);
    MOE_THROW("token file '" << path << "' is empty");
  }
  if (map_bytes_ % bytes_per_token_ != 0) {
    ::close(fd);
    MOE_THROW("token file '" << path << "' has " << map_bytes_ << " bytes, not a whole number of " << token_dtype
                             << " tokens (data.token_dtype)");
  }
  map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  MOE_CHECK(map_ != MAP_FAILED, "token file '" << path << "' cannot be mapped: " << std::strerror(errno));
  num_tokens_ = int64_t(map_bytes_ / bytes_per_token_);
  MOE_CHECK(num_tokens_ >= seq_len + 1, "token file '" << path << "' holds " << num_tokens_
                                                       << " tokens, fewer than train.seq_len + 1 = " << seq_len + 1);
}

TokenFile::~TokenFile() {
  if (map_ && map_ != MAP_FAILED) ::munmap(map_, map_bytes_);
}

uint32_t TokenFile::token(int64_t i) const {
  if (bytes_per_token_ == 2) {
    uint16_t v;
    std::memcpy(&v, static_cast<const char*>(map_) + i * 2, 2);
    return v;
  }
  uint32_t v;
  std::memcpy(&v, static_cast<const char*>(map_) + i * 4, 4);
  return v;
}

void TokenFile::read_sample(int64_t j, int32_t* inputs, int32_t* targets) const {
  MOE_CHECK(j >= 0 && j < num_samples(), "sample " << j << " outside token file '" << path_ << "'");
  int64_t start = j * seq_len_;
  for (int64_t i = 0; i < seq_len_; ++i) {
    inputs[i] = int32_t(token(start + i));
    targets[i] = int32_t(token(start + i + 1));
  }
}

void TokenFile::check_vocab(int64_t vocab_size) const {
  for (int64_t i = 0; i < num_tokens_; ++i) {
    uint32_t t = token(i);
    MOE_CHECK(int64_t(t) < vocab_size, "token file '" << path_ << "': token " << t << " at position " << i
                                                      << " is >= model.vocab_size (" << vocab_size << ")");
  }
}

}  // namespace moe
