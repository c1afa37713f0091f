// AdamW against a step computed by hand (PyTorch formulas in double), the learning-rate schedule
// against SPEC's formulas, global-norm clipping, and the expert-bias update rule.
#include <gtest/gtest.h>

#include <cmath>

#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "optim/lr_schedule.h"
#include "parallel/communicator.h"
#include "test_util.h"

namespace moe {

TEST(AdamW, TwoStepsMatchHandComputation) {
  ParamStore store;
  Param& w = store.add("w", {2, 3}, Init::Normal, 1.0);  // rank 2: decayed
  Param& b = store.add("b", {3}, Init::Ones);           // rank 1: not decayed
  store.initialize(3);
  OptimConfig oc;
  oc.beta1 = 0.9;
  oc.beta2 = 0.95;
  oc.eps = 1e-8;
  oc.weight_decay = 0.1;
  AdamW opt(oc, store.params());
  std::vector<double> p0(w.value.data(), w.value.data() + 6), q0(b.value.data(), b.value.data() + 3);
  std::vector<double> m(9, 0.0), v(9, 0.0);
  auto g = test::random_vector(9, 4);
  const double lrs[2] = {1e-2, 5e-3};
  for (int step = 1; step <= 2; ++step) {
    for (int i = 0; i < 6; ++i) w.grad.data()[i] = g[i] * step;
    for (int i = 0; i < 3; ++i) b.grad.data()[i] = g[6 + i] * step;
    opt.step(lrs[step - 1]);
    double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.95, step);
    for (int i = 0; i < 9; ++i) {
      double gi = double(g[i]) * step;
      double& p = i < 6 ? p0[i] : q0[i - 6];
      double wd = i < 6 ? 0.1 : 0.0;
      p -= lrs[step - 1] * wd * p;
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.95 * v[i] + 0.05 * gi * gi;
      p -= lrs[step - 1] * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + 1e-8);
    }
  }
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(w.value.data()[i], p0[i], 1e-6);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(b.value.data()[i], q0[i], 1e-6);
  EXPECT_EQ(opt.step_count(), 2);
}

TEST(LrSchedule, WarmupThenCosineLinearConstant) {
  OptimConfig o;
  o.lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_steps = 4;
  const int steps = 14;
  EXPECT_DOUBLE_EQ(learning_rate(o, steps, 1), 0.25);
  EXPECT_DOUBLE_EQ(learning_rate(o, steps, 4), 1.0);
  o.schedule = "cosine";
  EXPECT_NEAR(learning_rate(o, steps, 9), 0.1 + 0.9 * (1 + std::cos(M_PI * 0.5)) / 2, 1e-12);
  EXPECT_NEAR(learning_rate(o, steps, 14), 0.1, 1e-12);
  o.schedule = "linear";
  EXPECT_NEAR(learning_rate(o, steps, 9), 1.0 - 0.9 * 0.5, 1e-12);
  o.schedule = "constant";
  EXPECT_DOUBLE_EQ(learning_rate(o, steps, 9), 1.0);
}

TEST(GradClip, GlobalNormOverAllParametersAndScaling) {
  ParamStore store;
  Param& a = store.add("a", {2}, Init::Zeros);
  Param& b = store.add("b", {1}, Init::Zeros);
  a.grad.data()[0] = 3;
  a.grad.data()[1] = 0;
  b.grad.data()[0] = 4;
  auto ps = store.params();
  double norm = global_grad_norm(ps);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  EXPECT_DOUBLE_EQ(clip_gradients(ps, norm, 10.0), 1.0);  // under the limit: untouched
  EXPECT_FLOAT_EQ(a.grad.data()[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_gradients(ps, norm, 1.0), 0.2);
  EXPECT_FLOAT_EQ(a.grad.data()[0], 0.6f);
  EXPECT_FLOAT_EQ(b.grad.data()[0], 0.8f);
}

TEST(ExpertBias, UpdateFollowsSignOfMeanMinusLoadOverTheStep) {
  Config c = parse_config(R"(
model: {vocab_size: 16, d_model: 8, n_layers: 1, n_heads: 2, ffn_hidden: 8, max_seq_len: 4,
        moe: {num_experts: 4, top_k: 1, expert_hidden: 4, router: {bias_update_rate: 0.5}}}
train: {seq_len: 4, micro_batch: 2, steps: 1}
)", "bias.yaml");
  c.finalize(1, false);
  auto comm = make_local_communicator();
  Transformer model(c.model, comm.get());
  model.params().initialize(1);
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8}, targets = tokens;
  model.forward_backward(tokens.data(), targets.data(), 2, 4, true, 0.5f);
  model.forward_backward(tokens.data(), targets.data(), 2, 4, true, 0.5f);
  auto loads = model.expert_loads().at(0).second;
  int64_t total = 0;
  for (auto l : loads) total += l;
  EXPECT_EQ(total, 16);  // 2 micro-batches x 8 tokens x top-1
  model.end_step();
  const float* bias = model.params().find_buffer("layers/0/moe/router/expert_bias")->value.data();
  for (int e = 0; e < 4; ++e) {
    double diff = 4.0 - double(loads[e]);
    EXPECT_FLOAT_EQ(bias[e], diff > 0 ? 0.5f : (diff < 0 ? -0.5f : 0.0f)) << "expert " << e;
  }
  auto after = model.expert_loads();
  for (auto l : after.at(0).second) EXPECT_EQ(l, 0);  // reset after the step
}

}  // namespace moe
