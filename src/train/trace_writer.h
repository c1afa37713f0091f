// Chrome trace-event JSON (loadable in Perfetto and chrome://tracing) for a window of steps: one
// process per rank, compute and communication on separate tracks. Each rank writes its events to
// <out_dir>/trace.rank<r>.json; after a barrier rank 0 merges them into <out_dir>/trace.json.
// Timestamps are the ranks' steady clocks (aligned across processes of one node).
#pragma once
#include <string>
#include <vector>

#include "core/profiler.h"
#include "parallel/communicator.h"

namespace moe {

// Collective over world. Returns the merged file's path (on every rank).
std::string write_trace(const std::vector<TraceEvent>& events, const std::string& out_dir, Communicator& world);

}  // namespace moe
