// moe-report RUN_DIR: writes RUN_DIR/report.html from RUN_DIR/metrics.jsonl (charts of loss,
// learning rate, throughput, step-time breakdown, expert load and imbalance).
#include <cstdio>

#include "core/error.h"
#include "train/report_html.h"

int main(int argc, char** argv) {
  if (argc != 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
    std::printf("usage: moe-report RUN_DIR   (writes RUN_DIR/report.html from RUN_DIR/metrics.jsonl)\n");
    return argc == 2 ? 0 : 2;
  }
  try {
    std::printf("%s\n", moe::write_run_report(argv[1]).c_str());
  } catch (const moe::Error& e) {
    std::fprintf(stderr, "%s\n", e.message().c_str());
    return 1;
  }
  return 0;
}
