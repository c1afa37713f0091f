// Trace writer.
#include "train/trace_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/profiler.h"

namespace moe {

std::string write_trace(const std::vector<TraceEvent>& events, const std::string& out_dir, Communicator& world) {
  const int rank = world.rank();
  const std::string part = out_dir + "/trace.rank" + std::to_string(rank) + ".json";
  {
    std::ofstream out(part, std::ios::trunc);
    MOE_CHECK(out.good(), "cannot write trace part '" << part << "'");
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "{\"ph\": \"M\", \"name\": \"process_name\", \"pid\": %d, \"args\": {\"name\": \"rank %d\"}},\n"
                  "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %d, \"tid\": 0, \"args\": {\"name\": \"compute\"}},\n"
                  "{\"ph\": \"M\", \"name\": \"thread_name\", \"pid\": %d, \"tid\": 1, \"args\": {\"name\": \"communication\"}}",
                  rank, rank, rank, rank);
    out << buf;
    for (const auto& e : events) {
      std::snprintf(buf, sizeof(buf),
                    ",\n{\"name\": \"%s\", \"ph\": \"X\", \"ts\": %.3f, \"dur\": %.3f, \"pid\": %d, \"tid\": %d}", e.name,
                    e.start_us, e.dur_us, rank, is_communication_phase(e.name) ? 1 : 0);
      out << buf;
    }
  }
  world.barrier();
  const std::string merged = out_dir + "/trace.json";
  if (rank == 0) {
    std::ofstream out(merged + ".tmp", std::ios::trunc);
    out << "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
    for (int r = 0; r < world.size(); ++r) {
      const std::string p = out_dir + "/trace.rank" + std::to_string(r) + ".json";
      std::ifstream in(p);
      std::stringstream ss;
      ss << in.rdbuf();
      out << (r ? ",\n" : "") << ss.str();
      std::filesystem::remove(p);
    }
    out << "\n]}\n";
    out.close();
    std::filesystem::rename(merged + ".tmp", merged);
  }
  world.barrier();
  return merged;
}

}  // namespace moe
