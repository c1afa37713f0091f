// Bucketed data-parallel gradient reduction.
#include "parallel/grad_sync.h"

#include <algorithm>
#include <cstring>

#include "core/profiler.h"

namespace moe {

static int layer_of(const std::string& name) {
  if (name.rfind("layers/", 0) != 0) return -1;
  return std::stoi(name.substr(7, name.find('/', 7) - 7));
}

GradSync::GradSync(const std::vector<Param*>& params, const std::function<Communicator*(const Param&)>& group_of) {
  for (Param* p : params) {
    Communicator* g = group_of(*p);
    if (!g || g->size() == 1) continue;
    active_ = true;
    auto& list = buckets_[layer_of(p->name)];
    auto it = std::find_if(list.begin(), list.end(), [&](const Bucket& b) { return b.group == g; });
    if (it == list.end()) {
      list.emplace_back();
      list.back().group = g;
      it = list.end() - 1;
    }
    it->params.push_back(p);
  }
}

void GradSync::start(Bucket& b) {
  if (b.started) return;
  b.started = true;
  if (b.params.empty() || b.group->size() == 1) return;
  int64_t n = 0;
  for (Param* p : b.params) n += p->grad.numel();
  b.flat.resize(size_t(n));
  int64_t o = 0;
  for (Param* p : b.params) {
    std::memcpy(b.flat.data() + o, p->grad.data(), sizeof(float) * p->grad.numel());
    o += p->grad.numel();
  }
  b.pending = b.group->all_reduce_sum_async(b.flat.data(), n);
}

void GradSync::start_layer(int layer) {
  if (!active_) return;
  ScopedPhase phase("grad_sync");
  auto it = buckets_.find(layer);
  if (it == buckets_.end()) return;
  for (auto& b : it->second) start(b);
}

void GradSync::start_rest() {
  if (!active_) return;
  ScopedPhase phase("grad_sync");
  for (auto& [layer, pair] : buckets_)
    for (auto& b : pair) start(b);
}

void GradSync::finish() {
  if (!active_) return;
  start_rest();
  ScopedPhase phase("grad_sync");
  for (auto& [layer, pair] : buckets_)
    for (auto& b : pair) {
      if (b.pending) {
        const double wait_start = now_ms();
        b.pending->wait();
        double ran_from = 0, ran_to = 0;
        if (b.pending->ran_between(&ran_from, &ran_to))
          Profiler::instance().async_comm("grad_allreduce", ran_from, ran_to, wait_start);
        b.pending.reset();
        int64_t o = 0;
        for (Param* p : b.params) {
          std::memcpy(p->grad.data(), b.flat.data() + o, sizeof(float) * p->grad.numel());
          o += p->grad.numel();
        }
      }
      b.started = false;
    }
}

}  // namespace moe
