// Byte-level tokenizer (vocab 256) and the corpus builder behind moe-data: text files -> train and
// validation token files. Each file is split by bytes: its last `valid_fraction` goes to validation,
// so every source (domain) appears in both splits.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct CorpusStats {
  int64_t files = 0;
  int64_t train_tokens = 0;
  int64_t valid_tokens = 0;
};

std::vector<uint16_t> byte_tokenize(const std::string& text);
std::string byte_detokenize(const std::vector<uint16_t>& tokens);

// Reads every input (files, or directories walked recursively in sorted order, skipping binary
// files: those with a NUL byte), writes uint16 tokens to train_path and valid_path. Throws naming
// the file on unreadable input, and when the result is empty.
CorpusStats build_byte_corpus(const std::vector<std::string>& inputs, double valid_fraction,
                              const std::string& train_path, const std::string& valid_path);

}  // namespace moe
