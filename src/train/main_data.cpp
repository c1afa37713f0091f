// moe-data: text files -> token files for moe-train (byte-level tokenizer, vocab 256).
//   moe-data --out DIR [--valid-fraction 0.05] INPUT...   (INPUT: files or directories)
// Writes DIR/train.bin and DIR/valid.bin (uint16 little-endian tokens).
#include <cstdio>

#include "core/host_memory.h"
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/logging.h"
#include "data/byte_tokenizer.h"

int main(int argc, char** argv) {
  moe::tune_host_allocator();
  moe::init_logging(0);
  try {
    std::string out;
    double valid_fraction = 0.05;
    std::vector<std::string> inputs;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "-h" || a == "--help") {
        std::printf("usage: moe-data --out DIR [--valid-fraction F] INPUT...\n"
                    "Byte-level tokenizes text files (directories are walked) into DIR/train.bin and\n"
                    "DIR/valid.bin; the last fraction F (default 0.05) of every file goes to valid.\n");
        return 0;
      } else if (a == "--out" && i + 1 < argc) {
        out = argv[++i];
      } else if (a == "--valid-fraction" && i + 1 < argc) {
        valid_fraction = std::stod(argv[++i]);
      } else if (!a.empty() && a[0] == '-') {
        MOE_THROW("moe-data: unknown option '" << a << "' (see --help)");
      } else {
        inputs.push_back(a);
      }
    }
    MOE_CHECK(!out.empty(), "moe-data: --out DIR is required (see --help)");
    MOE_CHECK(!inputs.empty(), "moe-data: no input files (see --help)");
    std::filesystem::create_directories(out);
    auto stats = moe::build_byte_corpus(inputs, valid_fraction, out + "/train.bin",
                                        valid_fraction > 0 ? out + "/valid.bin" : "");
    moe::log_info(moe::strformat("[data] %lld files -> %s/train.bin (%lld tokens), valid.bin (%lld tokens)",
                                 (long long)stats.files, out.c_str(), (long long)stats.train_tokens,
                                 (long long)stats.valid_tokens));
  } catch (const std::exception& e) {
    moe::log_error(e.what());
    return 1;
  }
  return 0;
}
