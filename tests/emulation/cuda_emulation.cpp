// The emulator of cuda_emulation.h: fibers, barriers, warp collectives and the PTX primitives.
//
// Fibers: a pool of them lives as long as the process. Each is entered once through ucontext
// (makecontext gives it its own stack) and from then on switched with _setjmp / _longjmp, which,
// unlike swapcontext, make no system call; a fiber loops: run the kernel as the thread it has been
// given, park, run it again for the next block or launch.
#undef _FORTIFY_SOURCE  // longjmp between fiber stacks is what the fortified check would refuse
#include "emulation/cuda_emulation.h"

#include <setjmp.h>
#include <ucontext.h>

#include <array>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe::emu {

Index3 block_index, grid_dim, block_dim;

namespace {

constexpr size_t kStackBytes = 256 * 1024;

enum class State { kReady, kAtBarrier, kAtWarp, kDone };

struct Copy {
  void* dst;
  const void* src;
  size_t bytes;
  bool valid;
};

struct Fiber {
  std::unique_ptr<char[]> stack{new char[kStackBytes]};  // pages touched only as deep as frames reach
  ucontext_t entry;      // its first entry
  jmp_buf resume_at;     // where it continues
  bool started = false;  // entered, and parked between kernel runs or inside one
  Index3 tid;
  State state = State::kReady;
  int parity = 0;                         // which exchange buffer its next warp collective uses
  std::vector<Copy> open;                 // cp.async copies not yet committed
  std::deque<std::vector<Copy>> groups;   // committed, not yet retired
};

// One lane's part in a warp collective.
struct Record {
  int op = 0;
  const void* ptr = nullptr;
  float f = 0.0f;
  uint32_t u[6] = {};
};

enum Op { kShfl = 1, kLdsm, kLdsmTrans, kMma };

struct Launch {
  std::vector<Fiber*> fibers;  // the block's threads, from the pool
  jmp_buf scheduler;
  int scan_from = 0;  // no fiber before this index of the schedule's order is ready
  Fiber* current = nullptr;
  const std::function<void()>* kernel = nullptr;
  const char* smem = nullptr;
  size_t smem_bytes = 0;
  int live = 0, at_barrier = 0;
  std::vector<int> at_warp;                            // lanes arrived, per warp
  std::vector<std::array<std::array<Record, 32>, 2>> exchange;  // per warp, two parities
  std::string failure;
};

Launch* g = nullptr;
Schedule g_schedule;

void fail(const std::string& what) {
  if (g->failure.empty()) {
    std::ostringstream os;
    os << what << " (block " << block_index.x << "," << block_index.y << ", thread " << g->current->tid.x << ")";
    g->failure = os.str();
  }
}

// From the running fiber back to the scheduler.
void yield() {
  if (_setjmp(g->current->resume_at) == 0) _longjmp(g->scheduler, 1);
}

// Fibers made ready again: the scheduler's next scan starts from the front.
void made_ready() { g->scan_from = 0; }

void check_shared(const void* p, size_t bytes, size_t align, const char* what) {
  const char* c = static_cast<const char*>(p);
  if (c < g->smem || c + bytes > g->smem + g->smem_bytes) fail(std::string(what) + ": address outside shared memory");
  if (reinterpret_cast<uintptr_t>(p) % align != 0) fail(std::string(what) + ": misaligned shared address");
}

// A fiber's whole life: run the kernel as its current thread, park, and again.
void fiber_main() {
  for (;;) {
    (*g->kernel)();
    Fiber* f = g->current;
    f->state = State::kDone;
    --g->live;
    if (!f->open.empty() || !f->groups.empty()) fail("thread exited with cp.async copies outstanding");
    if (g->at_barrier > 0) fail("thread exited while others wait at __syncthreads");
    yield();
  }
}

// From the scheduler into fiber f, until it yields.
void resume(Fiber* f) {
  if (_setjmp(g->scheduler) != 0) return;
  if (f->started) _longjmp(f->resume_at, 1);
  f->started = true;
  getcontext(&f->entry);
  f->entry.uc_stack.ss_sp = f->stack.get();
  f->entry.uc_stack.ss_size = kStackBytes;
  f->entry.uc_link = nullptr;  // fiber_main never returns
  makecontext(&f->entry, fiber_main, 0);
  ucontext_t abandoned;  // the fiber comes back by _longjmp to g->scheduler, never here
  swapcontext(&abandoned, &f->entry);
}

// All lanes of the warp post their record; returns the 32 records once every lane has.
const std::array<Record, 32>& warp_exchange(const Record& mine) {
  Fiber* f = g->current;
  const int w = int(f->tid.x / 32), lane = int(f->tid.x % 32), par = f->parity;
  f->parity ^= 1;
  auto& recs = g->exchange[size_t(w)][size_t(par)];
  recs[size_t(lane)] = mine;
  if (++g->at_warp[size_t(w)] == 32) {
    g->at_warp[size_t(w)] = 0;
    for (int l = 0; l < 32; ++l) {
      Fiber& other = *g->fibers[size_t(w * 32 + l)];
      if (other.state == State::kAtWarp) other.state = State::kReady;
    }
    made_ready();
  } else {
    f->state = State::kAtWarp;
    yield();
  }
  for (const Record& r : recs)
    if (r.op != mine.op) fail("lanes of one warp in different collectives (divergent warp)");
  return recs;
}

float bf16_value(uint32_t bits16) {
  const uint32_t u = bits16 << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint32_t bf16_bits(const void* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}
uint32_t half_of(uint32_t reg, int half) { return half ? reg >> 16 : reg & 0xffffu; }

void retire(const std::vector<Copy>& group) {
  for (const Copy& c : group) {
    if (c.valid)
      std::memcpy(c.dst, c.src, c.bytes);
    else
      std::memset(c.dst, 0, c.bytes);
  }
}

void record_copy(void* dst, const void* src, size_t bytes, bool valid) {
  check_shared(dst, bytes, bytes, "cp.async destination");
  if (valid && reinterpret_cast<uintptr_t>(src) % bytes != 0) fail("cp.async: misaligned global source");
  const Copy c{dst, src, bytes, valid};
  if (g_schedule.copies_at_issue) {
    std::vector<Copy> now{c};
    retire(now);
  }
  g->current->open.push_back(c);
}

}  // namespace

const Index3& thread_index() { return g->current->tid; }

void syncthreads() {
  if (++g->at_barrier == g->live) {
    g->at_barrier = 0;
    for (Fiber* f : g->fibers)
      if (f->state == State::kAtBarrier) f->state = State::kReady;
    made_ready();
    return;
  }
  g->current->state = State::kAtBarrier;
  yield();
}

float shfl_xor(float v, int lane_mask) {
  Record r;
  r.op = kShfl;
  r.f = v;
  const auto& all = warp_exchange(r);
  return all[size_t((g->current->tid.x % 32) ^ unsigned(lane_mask))].f;
}

namespace {

// The threads of the current block as fibers. Each runs until it waits; then the first ready
// thread in the schedule's order runs, so that the warps drift apart as far as the barriers let
// them (warp 0 first, or the last warp first).
void run_block(Launch& state) {
  state.live = int(state.fibers.size());
  state.at_barrier = 0;
  state.scan_from = 0;
  for (size_t t = 0; t < state.fibers.size(); ++t) {
    Fiber& f = *state.fibers[t];
    f.tid = Index3{unsigned(t), 0, 0};
    f.state = State::kReady;
    f.parity = 0;
    f.open.clear();
    f.groups.clear();
  }
  const int n = int(state.fibers.size());
  while (state.live > 0 && state.failure.empty()) {
    Fiber* next = nullptr;  // the first ready thread in the schedule's order
    int i = state.scan_from;
    for (; i < n && !next; ++i) {
      Fiber* f = state.fibers[size_t(g_schedule.reverse_warps ? n - 1 - i : i)];
      if (f->state == State::kReady) next = f;
    }
    if (!next) {
      state.failure = "deadlock: threads wait at a barrier others never reach";
      break;
    }
    state.scan_from = i - 1;
    state.current = next;
    resume(next);
  }
  if (!state.failure.empty())  // threads left inside the kernel start afresh at the next launch
    for (Fiber* f : state.fibers)
      if (f->state != State::kDone) f->started = false;
}

// The fiber pool: thread t of every launch is fiber t.
std::vector<Fiber*> pooled_fibers(unsigned threads) {
  static std::vector<std::unique_ptr<Fiber>> pool;
  while (pool.size() < threads) pool.emplace_back(new Fiber);
  std::vector<Fiber*> out(threads);
  for (unsigned t = 0; t < threads; ++t) out[t] = pool[t].get();
  return out;
}

std::mutex launch_mutex;        // one launch at a time in the process (the emulator's state is global)
thread_local bool in_launch = false;

}  // namespace

void set_schedule(const Schedule& schedule) { g_schedule = schedule; }

unsigned char* dynamic_smem() { return reinterpret_cast<unsigned char*>(const_cast<char*>(g->smem)); }

unsigned char* shared_buffer() {
  alignas(128) static unsigned char buffer[kMaxDynamicSmem];
  return buffer;
}

void check_launch(dim3 block, size_t smem_bytes) {
  if (block.y != 1 || block.z != 1) throw std::invalid_argument("emulated launch: only one-dimensional blocks");
  if (block.x > 1024) throw std::invalid_argument("emulated launch: more than 1024 threads per block");
  if (smem_bytes > kMaxDynamicSmem) throw std::invalid_argument("emulated launch: dynamic shared memory over 227 KiB");
}

void launch(Index3 grid, unsigned threads, void* smem, size_t smem_bytes, const std::function<void()>& kernel) {
  if (threads == 0 || threads % 32 != 0) throw std::invalid_argument("emulated launch: threads must be a multiple of 32");
  if (in_launch) throw std::logic_error("emulated launch from inside a kernel");
  std::lock_guard<std::mutex> lock(launch_mutex);
  in_launch = true;
  Launch state;
  g = &state;
  state.kernel = &kernel;
  state.smem = static_cast<const char*>(smem);
  state.smem_bytes = smem_bytes;
  state.fibers = pooled_fibers(threads);
  state.at_warp.assign(threads / 32, 0);
  state.exchange.resize(threads / 32);
  grid_dim = grid;
  block_dim = Index3{threads, 1, 1};
  for (unsigned bz = 0; bz < grid.z && state.failure.empty(); ++bz)
    for (unsigned by = 0; by < grid.y && state.failure.empty(); ++by)
      for (unsigned bx = 0; bx < grid.x && state.failure.empty(); ++bx) {
        block_index = Index3{bx, by, bz};
        run_block(state);
      }
  g = nullptr;
  in_launch = false;
  if (!state.failure.empty()) throw std::runtime_error("emulated CUDA kernel: " + state.failure);
}

}  // namespace moe::emu

namespace moe::cuda::mma {

using emu::g;

void cp_async16(void* dst, const void* src, bool valid) { emu::record_copy(dst, src, 16, valid); }
void cp_async4(void* dst, const void* src, bool valid) { emu::record_copy(dst, src, 4, valid); }

void cp_async_commit() {
  auto& f = *g->current;
  f.groups.push_back(std::move(f.open));
  f.open.clear();
}

void cp_async_wait_groups(int n) {
  auto& f = *g->current;
  while (int(f.groups.size()) > n) {
    if (!emu::g_schedule.copies_at_issue) emu::retire(f.groups.front());
    f.groups.pop_front();
  }
}

namespace {

// ldmatrix .x4: lane l gets, of matrix i (rows at the addresses of lanes 8 i .. 8 i + 7),
// elements (l / 4, 2 (l % 4)) and (l / 4, 2 (l % 4) + 1), or with trans (2 (l % 4), l / 4) and
// (2 (l % 4) + 1, l / 4).
void ldsm(uint32_t (&r)[4], const bf16* p, bool trans) {
  emu::check_shared(p, 16, 16, "ldmatrix row");
  emu::Record mine;
  mine.op = trans ? emu::kLdsmTrans : emu::kLdsm;
  mine.ptr = p;
  const auto& all = emu::warp_exchange(mine);
  const int lane = int(g->current->tid.x % 32), row = lane / 4, col = 2 * (lane % 4);
  for (int i = 0; i < 4; ++i) {
    const auto* rows = &all[size_t(8 * i)];
    uint32_t lo, hi;
    if (!trans) {
      const auto* base = static_cast<const bf16*>(rows[row].ptr);
      lo = emu::bf16_bits(base + col), hi = emu::bf16_bits(base + col + 1);
    } else {
      lo = emu::bf16_bits(static_cast<const bf16*>(rows[col].ptr) + row);
      hi = emu::bf16_bits(static_cast<const bf16*>(rows[col + 1].ptr) + row);
    }
    r[i] = lo | (hi << 16);
  }
}

}  // namespace

void ldsm_x4(uint32_t (&r)[4], const bf16* p) { ldsm(r, p, false); }
void ldsm_x4_trans(uint32_t (&r)[4], const bf16* p) { ldsm(r, p, true); }

// D = A B + C for m16n8k16: A (16 x 16) element (m, k) in lane 4 (m % 8) + (k % 8) / 2, register
// (m >= 8) + 2 (k >= 8), half k % 2; B (16 x 8) element (k, n) in lane 4 n + (k % 8) / 2, register
// b0 / b1 by k >= 8, half k % 2; C / D element (m, n) in lane 4 (m % 8) + n / 2, index
// 2 (m >= 8) + n % 2.
void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  emu::Record mine;
  mine.op = emu::kMma;
  for (int i = 0; i < 4; ++i) mine.u[i] = a[i];
  mine.u[4] = b0, mine.u[5] = b1;
  const auto& all = emu::warp_exchange(mine);
  const int lane = int(g->current->tid.x % 32);
  for (int e = 0; e < 4; ++e) {
    const int m = lane / 4 + 8 * (e >> 1), n = 2 * (lane % 4) + (e & 1);
    float acc = c[e];
    for (int k = 0; k < 16; ++k) {
      const auto& ra = all[size_t(4 * (m % 8) + (k % 8) / 2)];
      const auto& rb = all[size_t(4 * n + (k % 8) / 2)];
      const float av = emu::bf16_value(emu::half_of(ra.u[(m >= 8) + 2 * (k >= 8)], k % 2));
      const float bv = emu::bf16_value(emu::half_of(rb.u[4 + (k >= 8)], k % 2));
      acc = std::fma(av, bv, acc);
    }
    c[e] = acc;
  }
}

}  // namespace moe::cuda::mma
