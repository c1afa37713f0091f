// Command-line parsing.
#include "train/cli_args.h"

#include "core/error.h"

namespace moe {

CliArgs parse_cli_args(int argc, char** argv, const char* program) {
  CliArgs a;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      a.help = true;
    } else if (arg == "--set") {
      MOE_CHECK(i + 1 < argc, program << ": --set needs key=value");
      a.overrides.push_back(argv[++i]);
    } else if (arg.rfind("--set=", 0) == 0) {
      a.overrides.push_back(arg.substr(6));
    } else if (!arg.empty() && arg[0] == '-') {
      MOE_THROW(program << ": unknown option '" << arg << "' (usage: " << program
                        << " CONFIG.yaml [--set key=value]...)");
    } else {
      MOE_CHECK(a.config_path.empty(), program << ": more than one config file given ('" << a.config_path
                                               << "' and '" << arg << "')");
      a.config_path = arg;
    }
  }
  MOE_CHECK(a.help || !a.config_path.empty(), program << ": no config file (usage: " << program
                                                      << " CONFIG.yaml [--set key=value]...)");
  return a;
}

}  // namespace moe
