// Step profiler implementation.
#include "core/profiler.h"

#include <algorithm>

namespace moe {

Profiler& Profiler::instance() {
  static Profiler p;
  return p;
}

void Profiler::enter(bool opaque) {
  frames_.push_back({0.0, opaque});
  if (opaque) ++opaque_open_;
}

void Profiler::leave(const char* phase, double start_ms, double end_ms) {
  const double total = end_ms - start_ms;
  Frame f = frames_.empty() ? Frame{} : frames_.back();
  if (!frames_.empty()) frames_.pop_back();
  if (f.opaque) --opaque_open_;
  if (opaque_open_ == 0) {  // not inside an opaque phase: counted
    if (!frames_.empty()) frames_.back().child_ms += total;  // the parent excludes this scope
    add(phase, total - f.child_ms);
    ++scopes_;
  }
  if (tracing_) trace_.push_back({phase, start_ms * 1000.0, total * 1000.0});
}

// Adds value to the entry named phase, appending it the first time (keeps first-seen order).
static void accumulate(std::vector<std::pair<std::string, double>>& totals, const char* phase, double value) {
  for (auto& [name, sum] : totals) {
    if (name == phase) {
      sum += value;
      return;
    }
  }
  totals.emplace_back(phase, value);
}

static std::vector<std::pair<std::string, double>> take_all(std::vector<std::pair<std::string, double>>& totals) {
  auto out = std::move(totals);
  totals.clear();
  return out;
}

void Profiler::add(const char* phase, double ms) {
  if (enabled_) accumulate(phases_, phase, ms);
}

std::vector<std::pair<std::string, double>> Profiler::take() { return take_all(phases_); }

void Profiler::set_main_thread() { main_thread_ = std::this_thread::get_id(); }

void Profiler::add_bytes(double bytes) {
  if (!enabled_ || std::this_thread::get_id() != main_thread_) return;
  accumulate(bytes_, current_phase().load(), bytes);
}

std::vector<std::pair<std::string, double>> Profiler::take_bytes() { return take_all(bytes_); }

void Profiler::async_comm(const char* name, double start_ms, double end_ms, double wait_start_ms) {
  if (!enabled_) return;
  overlapped_ms_ += std::min(std::max(wait_start_ms - start_ms, 0.0), end_ms - start_ms);
  if (tracing_) trace_.push_back({name, start_ms * 1000.0, (end_ms - start_ms) * 1000.0});
}

double Profiler::take_overlapped_ms() {
  const double v = overlapped_ms_;
  overlapped_ms_ = 0;
  return v;
}

int64_t Profiler::take_scope_count() {
  const int64_t n = scopes_;
  scopes_ = 0;
  return n;
}

bool is_communication_phase(const std::string& n) {
  return n == "dispatch" || n == "combine" || n == "dispatch_counts" || n == "grad_sync" || n == "grad_allreduce" ||
         n == "param_gather" || n == "tp_allreduce" || n == "tp_gather" || n == "moe_stats_sync" || n == "loss_sync";
}

std::vector<TraceEvent> Profiler::take_trace() {
  auto out = std::move(trace_);
  trace_.clear();
  return out;
}

std::atomic<const char*>& Profiler::current_phase() {
  static std::atomic<const char*> phase{""};
  return phase;
}

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

}  // namespace moe
