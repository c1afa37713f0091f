// CpuPlayedGpu and the comparison of two Trainer runs (cpu_played_gpu.h).
#include "cpu_played_gpu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "test_util.h"
#include "train/checkpoint.h"

namespace moe::test {

int CpuPlayedGpu::copies = 0;
int CpuPlayedGpu::dp_size = 0;
int CpuPlayedGpu::ep_size = 0;

CpuPlayedGpu::CpuPlayedGpu(const Config& cfg, Transformer& host, AdamW& optim, ParallelGroups& groups)
    : groups_(groups),
      model_(cfg.model, MoeGroups(groups_.world, groups_.ep.get(), groups_.tp.get())),
      optim_(cfg.optim, model_.params().params(), cfg.parallel.zero == 1 ? groups_.dp.get() : nullptr),
      runner_(cfg, groups_, model_, optim_) {
  dp_size = groups.dp->size();
  ep_size = groups.ep->size();
  for (Param* p : host.params().params()) model_.params().find(p->name)->value.copy_from(p->value);
  for (size_t i = 0; i < optim.params().size(); ++i)
    for (int w = 0; w < 2; ++w) optim_.set_moment(i, w, optim.moment(i, w));
  optim_.set_step_count(optim.step_count());
}

double CpuPlayedGpu::validation_ce(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S) {
  return model_.forward_backward(tokens, targets, B, S, false, 0.0f).ce;
}

void CpuPlayedGpu::to_host(Transformer& host, AdamW& optim) {
  ++copies;
  for (Param* p : host.params().params()) p->value.copy_from(model_.params().find(p->name)->value);
  for (size_t i = 0; i < optim.params().size(); ++i)
    for (int w = 0; w < 2; ++w) optim.set_moment(i, w, optim_.moment(i, w));
  optim.set_step_count(optim_.step_count());
}

std::unique_ptr<GpuTraining> make_cpu_played_gpu(const Config& cfg, Transformer& host, AdamW& optim,
                                                 ParallelGroups& groups) {
  return std::make_unique<CpuPlayedGpu>(cfg, host, optim, groups);
}

void expect_same_runs(const Config& a, const Config& b, const std::vector<int>& eval_steps,
                      const std::vector<int>& ckpt_steps) {
  auto metric_lines = [](const Config& c) {
    std::vector<std::string> out;
    for (const auto& l : read_lines(c.run.out_dir + "/metrics.jsonl"))
      if (!l.empty()) out.push_back(l);
    return out;
  };
  const auto la = metric_lines(a), lb = metric_lines(b);
  ASSERT_EQ(la.size(), lb.size());
  for (size_t i = 0; i < la.size(); ++i) {
    for (const char* key : {"loss", "grad_norm", "val_loss"}) {
      const double x = json_number(la[i], key), y = json_number(lb[i], key);
      EXPECT_EQ(std::isnan(x), std::isnan(y)) << key << " in line " << i + 1;
      if (!std::isnan(x)) {
        EXPECT_EQ(x, y) << key << " in line " << i + 1;
      }
    }
    auto loads = [](const std::string& line) {  // "expert_load": {"0": [...], ...}
      const auto at = line.find("\"expert_load\"");
      return at == std::string::npos ? std::string() : line.substr(at, line.find('}', at) - at);
    };
    EXPECT_EQ(loads(la[i]), loads(lb[i])) << "line " << i + 1;
    EXPECT_FALSE(loads(lb[i]).empty()) << "line " << i + 1;
    const bool evaluated = std::count(eval_steps.begin(), eval_steps.end(), int(i + 1)) > 0;
    EXPECT_EQ(std::isnan(json_number(lb[i], "val_loss")), !evaluated) << "evaluation at step " << i + 1;
  }
  auto local = make_local_communicator();
  for (int step : ckpt_steps) {
    Transformer x(a.model, local.get()), y(b.model, local.get());
    AdamW ox(a.optim, x.params().params()), oy(b.optim, y.params().params());
    load_checkpoint(checkpoint_path(a.checkpoint.dir, step), x.params(), &ox);
    load_checkpoint(checkpoint_path(b.checkpoint.dir, step), y.params(), &oy);
    EXPECT_EQ(ox.step_count(), oy.step_count());
    for (Param* p : x.params().params())
      EXPECT_EQ(max_abs_diff(p->value.data(), y.params().find(p->name)->value.data(), p->value.numel()), 0.0)
          << "step " << step << " " << p->name;
  }
}

}  // namespace moe::test
