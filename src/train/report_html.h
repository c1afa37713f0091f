// The run report: a self-contained HTML page (inline SVG, no scripts, no network) drawn from a run
// directory's metrics.jsonl: loss and validation loss, learning rate, the stacked step-time
// breakdown, expert load per MoE layer over time as a heat map, and load imbalance over time.
#pragma once
#include <string>

namespace moe {

// Reads <run_dir>/metrics.jsonl, writes <run_dir>/report.html; returns its path. Throws on a
// missing or malformed metrics file, naming it and the line.
std::string write_run_report(const std::string& run_dir);

}  // namespace moe
