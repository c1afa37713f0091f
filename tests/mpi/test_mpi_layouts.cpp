// Layout equivalence (DESIGN invariant 1): data and expert parallel layouts train a few steps and
// must match the one-rank run, computed in the same process with a LocalCommunicator, in losses and
// in every final weight. Checkpoints written by one layout load into another (invariant 3).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "data/sampler.h"
#include "data/token_file.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "parallel/layout.h"
#include "parallel/shard_gather.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/train_step.h"

namespace moe {
namespace {

struct TrainResult {
  std::vector<double> losses, grad_norms;
  std::map<std::string, std::vector<float>> full;  // every parameter at its logical shape
};

std::vector<float> gather_full(const Param& p, const Tensor& local, const ParallelGroups& g) {
  Tensor full = gather_full_tensor(p, local, {g.tp.get(), g.ep.get()});
  return std::vector<float>(full.data(), full.data() + full.numel());
}

// Trains cfg.train.steps steps on `world` and returns losses and full weights; optionally saves a
// checkpoint at the end into ckpt_dir (collective).
TrainResult train(Config cfg, Communicator& world, const std::string& data_path, const std::string& ckpt_dir = "") {
  cfg.finalize(world.size(), false);
  ParallelGroups groups = ParallelGroups::build(world, cfg);
  Transformer model(cfg.model, MoeGroups(groups.world, groups.ep.get(), groups.tp.get()));
  model.params().initialize(uint64_t(cfg.run.seed));
  AdamW opt(cfg.optim, model.params().params(), cfg.parallel.zero == 1 ? groups.dp.get() : nullptr);
  StepRunner runner(cfg, groups, model, opt);
  TokenFile data(data_path, "uint16", cfg.train.seq_len);
  Sampler sampler(data.num_samples(), cfg.train.global_batch, true, uint64_t(cfg.run.seed));
  TrainResult out;
  for (int64_t step = 0; step < cfg.train.steps; ++step) {
    auto r = runner.run(step, [&](int m, int32_t* tokens, int32_t* targets) {
      auto s = sampler.micro_batch(step, groups.dp_rank, groups.dp_size, m, cfg.train.micro_batch);
      for (size_t i = 0; i < s.size(); ++i)
        data.read_sample(s[i], tokens + i * cfg.train.seq_len, targets + i * cfg.train.seq_len);
    });
    out.losses.push_back(r.loss);
    out.grad_norms.push_back(r.grad_norm);
  }
  auto ps = model.params().params();
  for (size_t i = 0; i < ps.size(); ++i) {
    out.full[ps[i]->name] = gather_full(*ps[i], ps[i]->value, groups);
    out.full["exp_avg_sq/" + ps[i]->name] = gather_full(*ps[i], opt.moment(i, 1), groups);
  }
  if (!ckpt_dir.empty())
    save_checkpoint(ckpt_dir, {cfg.train.steps, 0, 0, ""}, model.params(), &opt, 1,
                    {&world, groups.tp.get(), groups.ep.get()});
  return out;
}

struct Case {
  std::string name;
  int tp;          // 0: all ranks
  int ep;          // 0: all ranks
  int micro;       // micro_batch of the layout; 0: one micro-batch per dp rank
  int ref_micro;   // micro_batch of the one-rank reference; 0: the whole global batch
  std::vector<std::string> sets;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Layouts : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    world_ = make_mpi_world_communicator().release();
    dir_ = std::string(MOE_BINARY_DIR) + "/test_tmp/mpi_layouts_" + std::to_string(world_->size());
    if (world_->rank() == 0) {
      std::filesystem::remove_all(dir_);
      std::filesystem::create_directories(dir_);
      std::vector<uint16_t> tokens;
      for (int i = 0; i < 3000; ++i) tokens.push_back(uint16_t((i * 7 + (i / 13) * 3) % 50));
      test::write_tokens(dir_ + "/train.bin", tokens);
    }
    world_->barrier();
  }
  static Config base(const Case& c, int micro, int ep, int tp = 1) {
    std::vector<std::string> sets = {"parallel.ep=" + std::to_string(ep), "parallel.tp=" + std::to_string(tp),
                                     "train.micro_batch=" + std::to_string(micro)};
    sets.insert(sets.end(), c.sets.begin(), c.sets.end());
    return parse_config(R"(
run: {seed: 3}
model: {vocab_size: 64, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_hidden: 40, max_seq_len: 16,
        moe: {num_experts: 8, top_k: 2, expert_hidden: 24, z_loss_coef: 0.001}}
train: {seq_len: 16, global_batch: 8, steps: 3}
optim: {lr: 0.003, warmup_steps: 1}
)",
                        c.name, sets);
  }
  static Communicator* world_;
  static std::string dir_;
};
Communicator* Layouts::world_ = nullptr;
std::string Layouts::dir_;

TEST_P(Layouts, MatchOneRankLossesAndWeights) {
  const Case& c = GetParam();
  const int n = world_->size();
  const int ep = c.ep == 0 ? n : c.ep, tp = c.tp == 0 ? n : c.tp;
  if (n % ep != 0 || n % tp != 0) GTEST_SKIP() << "tp " << tp << " / ep " << ep << " do not divide " << n << " ranks";
  const int micro = c.micro == 0 ? 8 / (n / tp) : c.micro;
  const int ref_micro = c.ref_micro == 0 ? 8 : c.ref_micro;
  auto local = make_local_communicator();
  TrainResult ref = train(base(c, ref_micro, 1), *local, dir_ + "/train.bin");
  TrainResult got = train(base(c, micro, ep, tp), *world_, dir_ + "/train.bin");
  for (size_t s = 0; s < ref.losses.size(); ++s) {
    EXPECT_NEAR(got.losses[s], ref.losses[s], 2e-6 * std::fabs(ref.losses[s])) << "step " << s + 1;
    EXPECT_NEAR(got.grad_norms[s], ref.grad_norms[s], 1e-4 * ref.grad_norms[s]) << "step " << s + 1;
  }
  for (const auto& [name, want] : ref.full) {
    const auto& have = got.full.at(name);
    ASSERT_EQ(have.size(), want.size()) << name;
    double worst = test::max_abs_diff(have.data(), want.data(), int64_t(want.size()));
    EXPECT_LT(worst, 2e-5) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, Layouts,
    ::testing::Values(
        Case{"dp", 1, 1, 2, 2, {}}, Case{"ep_all_ranks", 1, 0, 2, 2, {}}, Case{"dp_x_ep2", 1, 2, 2, 2, {}},
        Case{"capacity_ep", 1, 0, 2, 2, {"model.moe.capacity_factor=1.0"}},
        Case{"global_lbl_ep", 1, 0, 0, 0, {"model.moe.lbl_scope=global"}},
        Case{"global_lbl_dp", 1, 1, 0, 0, {"model.moe.lbl_scope=global", "model.moe.aux_loss_coef=0.1"}},
        Case{"zero1_dp", 1, 1, 2, 2, {"parallel.zero=1"}},
        Case{"zero1_ep_global", 1, 0, 0, 0, {"parallel.zero=1", "model.moe.lbl_scope=global"}},
        Case{"seq_sigmoid_shared_bias",
             1,
             0,
             2,
             2,
             {"model.moe.lbl_scope=seq", "model.moe.score=sigmoid", "model.moe.num_shared_experts=1",
              "model.moe.router.bias_update_rate=0.01"}},
        Case{"tp_all_ranks", 0, 1, 2, 2, {"model.n_kv_heads=4", "model.moe.first_dense_layers=1"}},
        Case{"tp2_ep2_zero1", 2, 2, 2, 2, {"parallel.zero=1"}},
        Case{"tp2_capacity_seq_shared_bias_tied",
             2,
             1,
             2,
             2,
             {"model.moe.capacity_factor=1.0", "model.moe.lbl_scope=seq", "model.moe.num_shared_experts=1",
              "model.moe.router.bias_update_rate=0.01", "model.tie_embeddings=true"}},
        Case{"tp2_global_lbl", 2, 0, 0, 0, {"model.moe.lbl_scope=global", "model.moe.aux_loss_coef=0.1"}}),
    [](const auto& info) { return info.param.name; });

TEST_F(Layouts, CheckpointsLoadAcrossLayouts) {
  const int n = world_->size();
  Case c{"ckpt", 0, 0, 0, 0, {"parallel.zero=1"}};
  auto local = make_local_communicator();
  const std::string multi_dir = dir_ + "/ckpt_multi", single_dir = dir_ + "/ckpt_single_" + std::to_string(world_->rank());
  // written by tp = 2 x ep = n ranks with ZeRO-1 (dp = n / 2)
  TrainResult multi = train(base(c, 8 / (n / 2), n, 2), *world_, dir_ + "/train.bin", multi_dir);
  world_->barrier();
  // Read by one rank: the full tensors are the gathered shards.
  Config one = base(c, 8, 1);
  one.parallel.zero = 0;
  one.finalize(1, false);
  Transformer single(one.model, local.get());
  load_checkpoint(checkpoint_path(multi_dir, 3), single.params(), nullptr);
  for (Param* p : single.params().params())
    EXPECT_EQ(0, std::memcmp(p->value.data(), multi.full.at(p->name).data(), sizeof(float) * p->value.numel()))
        << p->name;
  // Written by one rank, read by tp = 2 x ep = n ranks with ZeRO-1: each rank reads exactly its slices.
  TrainResult ref = train(one, *local, dir_ + "/train.bin", single_dir);
  Config many = base(c, 8 / (n / 2), n, 2);
  many.finalize(n, false);
  ParallelGroups groups = ParallelGroups::build(*world_, many);
  Transformer sharded(many.model, MoeGroups(groups.world, groups.ep.get(), groups.tp.get()));
  AdamW opt(many.optim, sharded.params().params(), groups.dp.get());  // ZeRO-1: moments sharded over dp
  load_checkpoint(checkpoint_path(single_dir, 3), sharded.params(), &opt);
  auto ps = sharded.params().params();
  for (size_t i = 0; i < ps.size(); ++i) {
    auto full = gather_full(*ps[i], ps[i]->value, groups);
    EXPECT_EQ(0, std::memcmp(full.data(), ref.full.at(ps[i]->name).data(), sizeof(float) * full.size()))
        << ps[i]->name;
    auto fm = gather_full(*ps[i], opt.moment(i, 1), groups);
    EXPECT_EQ(0, std::memcmp(fm.data(), ref.full.at("exp_avg_sq/" + ps[i]->name).data(), sizeof(float) * fm.size()))
        << "exp_avg_sq of " << ps[i]->name;
  }
  EXPECT_EQ(opt.step_count(), 3);
}

}  // namespace
}  // namespace moe
