// Byte-level tokenizer and corpus builder.
#include "data/byte_tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace moe {
namespace fs = std::filesystem;

std::vector<uint16_t> byte_tokenize(const std::string& text) {
  std::vector<uint16_t> out(text.size());
  for (size_t i = 0; i < text.size(); ++i) out[i] = static_cast<unsigned char>(text[i]);
  return out;
}

std::string byte_detokenize(const std::vector<uint16_t>& tokens) {
  std::string out(tokens.size(), '\0');
  for (size_t i = 0; i < tokens.size(); ++i) out[i] = char(tokens[i] & 0xFF);
  return out;
}

static void collect(const fs::path& p, std::vector<fs::path>& files) {
  std::error_code ec;
  if (fs::is_directory(p, ec)) {
    std::vector<fs::path> entries;
    for (const auto& e : fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec))
      if (!e.is_symlink(ec) && e.is_regular_file(ec)) entries.push_back(e.path());  // links: duplicates
    std::sort(entries.begin(), entries.end());
    files.insert(files.end(), entries.begin(), entries.end());
  } else {
    MOE_CHECK(fs::is_regular_file(p, ec), "moe-data: input '" << p.string() << "' is not a file or directory");
    files.push_back(p);
  }
}

static void write_tokens(const std::string& path, const std::vector<uint16_t>& tokens) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MOE_CHECK(out.good(), "moe-data: cannot write '" << tmp << "'");
    out.write(reinterpret_cast<const char*>(tokens.data()), std::streamsize(tokens.size() * sizeof(uint16_t)));
    MOE_CHECK(out.good(), "moe-data: write to '" << tmp << "' failed");
  }
  fs::rename(tmp, path);
}

CorpusStats build_byte_corpus(const std::vector<std::string>& inputs, double valid_fraction,
                              const std::string& train_path, const std::string& valid_path) {
  MOE_CHECK(valid_fraction >= 0 && valid_fraction < 1, "moe-data: --valid-fraction must be in [0, 1)");
  std::vector<fs::path> files;
  for (const auto& in : inputs) collect(in, files);
  CorpusStats stats;
  std::vector<uint16_t> train, valid;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    MOE_CHECK(in.good(), "moe-data: cannot read '" << f.string() << "'");
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (text.empty() || text.find('\0') != std::string::npos) continue;  // empty or binary
    if (text.back() != '\n') text.push_back('\n');
    size_t cut = text.size() - size_t(double(text.size()) * valid_fraction);
    auto tokens = byte_tokenize(text);
    train.insert(train.end(), tokens.begin(), tokens.begin() + cut);
    valid.insert(valid.end(), tokens.begin() + cut, tokens.end());
    stats.files++;
  }
  MOE_CHECK(!train.empty(), "moe-data: no text found in the inputs");
  MOE_CHECK(valid_fraction == 0 || !valid.empty(), "moe-data: validation split is empty");
  write_tokens(train_path, train);
  if (!valid_path.empty()) write_tokens(valid_path, valid);
  stats.train_tokens = int64_t(train.size());
  stats.valid_tokens = int64_t(valid.size());
  return stats;
}

}  // namespace moe
