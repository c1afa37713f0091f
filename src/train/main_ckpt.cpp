// moe-ckpt: inspect, verify and compare checkpoints.
//   moe-ckpt info FILE
//   moe-ckpt verify FILE
//   moe-ckpt diff A B [--atol X] [--rtol Y]
//   moe-ckpt bench DIR CONFIG.yaml
#include <cstdio>

#include "core/host_memory.h"
#include <cstdlib>
#include <string>
#include <vector>

#include "train/ckpt_tool.h"

int main(int argc, char** argv) {
  moe::tune_host_allocator();
  std::vector<std::string> args(argv + 1, argv + argc);
  auto usage = [] {
    std::printf("usage: moe-ckpt info FILE | verify FILE | diff A B [--atol X] [--rtol Y] | bench DIR CONFIG.yaml\n");
    return 2;
  };
  if (args.empty() || args[0] == "-h" || args[0] == "--help") return usage();
  if (args[0] == "info" && args.size() == 2) return moe::ckpt_info(args[1]);
  if (args[0] == "verify" && args.size() == 2) return moe::ckpt_verify(args[1]);
  if (args[0] == "bench" && args.size() == 3) return moe::ckpt_bench(args[1], args[2]);
  if (args[0] == "diff" && args.size() >= 3) {
    double atol = 0, rtol = 0;
    for (size_t i = 3; i + 1 < args.size(); i += 2) {
      if (args[i] == "--atol") atol = std::atof(args[i + 1].c_str());
      else if (args[i] == "--rtol") rtol = std::atof(args[i + 1].c_str());
      else return usage();
    }
    if (args.size() % 2 == 0) return usage();
    return moe::ckpt_diff(args[1], args[2], atol, rtol);
  }
  return usage();
}
