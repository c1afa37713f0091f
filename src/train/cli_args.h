// Command-line parsing shared by moe-train and moe-bench: CONFIG.yaml [--set key=value]...
#pragma once
#include <string>
#include <vector>

namespace moe {

struct CliArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // "a.b=value"
  bool help = false;
};

// Throws moe::Error with a usage message on bad arguments.
CliArgs parse_cli_args(int argc, char** argv, const char* program);

}  // namespace moe
