// Profiler accounting (exclusive time of nested scopes, opaque scopes, the overlapped part of a
// non-blocking collective, the profiler switched off) and the communication thread that runs
// non-blocking collectives (order, timing, errors).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/profiler.h"
#include "parallel/comm_worker.h"

namespace moe {

static void busy_ms(double ms) {
  const double end = now_ms() + ms;
  while (now_ms() < end) {
  }
}

static double lookup(const std::vector<std::pair<std::string, double>>& kv, const std::string& k) {
  for (const auto& [name, v] : kv)
    if (name == k) return v;
  return -1;
}

struct ProfilerTest : ::testing::Test {
  void SetUp() override {
    Profiler::instance().set_main_thread();
    Profiler::instance().set_enabled(true);
    Profiler::instance().take();
    Profiler::instance().take_overlapped_ms();
    Profiler::instance().take_scope_count();
  }
  void TearDown() override { Profiler::instance().set_enabled(true); }
};

// Timed on wall clock, so a preemption on a loaded machine can add milliseconds where they do not
// belong: up to three attempts, and the last one's findings are reported when none is clean (an
// accounting bug fails every attempt).
TEST_F(ProfilerTest, NestedScopesAreChargedTheirExclusiveTime) {
  std::string findings;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Profiler::instance().take();
    Profiler::instance().take_scope_count();
    const double t0 = now_ms();
    {
      ScopedPhase outer("outer_phase");
      busy_ms(20);
      {
        ScopedPhase inner("inner_phase");
        busy_ms(30);
      }
      {
        ScopedPhase opaque("opaque_phase", /*opaque=*/true);
        ScopedPhase hidden("hidden_phase");  // inside an opaque scope: not counted
        busy_ms(10);
      }
    }
    const double wall = now_ms() - t0;
    const auto phases = Profiler::instance().take();
    double sum = 0;
    for (const auto& [name, ms] : phases) sum += ms;
    std::ostringstream os;
    auto expect_near = [&](const char* what, double got, double want, double tol) {
      if (!(std::fabs(got - want) <= tol)) os << what << " " << got << " (want " << want << " +- " << tol << "); ";
    };
    expect_near("inner_phase", lookup(phases, "inner_phase"), 30, 3);
    expect_near("outer_phase", lookup(phases, "outer_phase"), 20, 3);
    expect_near("opaque_phase", lookup(phases, "opaque_phase"), 10, 3);
    expect_near("hidden_phase (absent)", lookup(phases, "hidden_phase"), -1, 0);
    expect_near("sum of phases against the wall time", sum, wall, 0.5);  // they add up to the time covered
    expect_near("scopes counted", double(Profiler::instance().take_scope_count()), 3, 0);
    findings = os.str();
    if (findings.empty()) break;
  }
  EXPECT_EQ(findings, "");
}

TEST_F(ProfilerTest, OverlapIsTheRunTimeBeforeTheWaitBegan) {
  Profiler& p = Profiler::instance();
  p.async_comm("grad_allreduce", 100, 110, 104);  // ran 10 ms, the wait began after 4: 4 hidden
  EXPECT_DOUBLE_EQ(p.take_overlapped_ms(), 4);
  p.async_comm("grad_allreduce", 100, 110, 95);   // waited from before it started: none hidden
  EXPECT_DOUBLE_EQ(p.take_overlapped_ms(), 0);
  p.async_comm("grad_allreduce", 100, 110, 130);  // done before anyone waited: all hidden
  p.async_comm("grad_allreduce", 200, 203, 201);
  EXPECT_DOUBLE_EQ(p.take_overlapped_ms(), 11);
  EXPECT_DOUBLE_EQ(p.take_overlapped_ms(), 0);  // taken
}

TEST_F(ProfilerTest, SwitchedOffRecordsNothingButStillNamesThePhaseForTheWatchdog) {
  Profiler::instance().set_enabled(false);
  {
    ScopedPhase phase("off_phase");
    EXPECT_STREQ(Profiler::current_phase().load(), "off_phase");
    Profiler::instance().async_comm("grad_allreduce", 0, 10, 20);
  }
  EXPECT_TRUE(Profiler::instance().take().empty());
  EXPECT_EQ(Profiler::instance().take_overlapped_ms(), 0);
  EXPECT_EQ(Profiler::instance().take_scope_count(), 0);
}

TEST_F(ProfilerTest, CommunicationPhasesAreTheCollectives) {
  for (const char* name : {"dispatch", "combine", "grad_sync", "grad_allreduce", "tp_allreduce"})
    EXPECT_TRUE(is_communication_phase(name)) << name;
  for (const char* name : {"experts_fwd", "attention_bwd", "optimizer", "data"})
    EXPECT_FALSE(is_communication_phase(name)) << name;
}

TEST(CommWorker, RunsJobsInQueueOrderOffTheCallingThreadAndTimesThem) {
  CommWorker worker;
  std::vector<int> order;
  std::atomic<bool> started{false};
  std::thread::id caller = std::this_thread::get_id(), ran_on;
  auto slow = worker.submit([&] {
    ran_on = std::this_thread::get_id();
    started = true;
    busy_ms(15);
    order.push_back(1);
  });
  auto fast = worker.submit([&] { order.push_back(2); });
  // it starts at once, not when waited for: seen started without any wait (however loaded the
  // machine, within 10 s)
  const double deadline = now_ms() + 10000;
  while (!started && now_ms() < deadline) std::this_thread::yield();
  EXPECT_TRUE(started);
  worker.wait(fast);  // waiting for the second implies the first is done too
  EXPECT_TRUE(slow->done);
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_NE(ran_on, caller);
  EXPECT_GE(slow->end_ms - slow->start_ms, 14.0);
  EXPECT_LE(slow->end_ms, fast->start_ms);
}

TEST(CommWorker, AJobsErrorIsRethrownByWait) {
  CommWorker worker;
  auto bad = worker.submit([] { throw std::runtime_error("collective failed"); });
  auto after = worker.submit([] {});
  EXPECT_THROW(worker.wait(bad), std::runtime_error);
  EXPECT_NO_THROW(worker.wait(after));  // the thread lives on
}

}  // namespace moe
