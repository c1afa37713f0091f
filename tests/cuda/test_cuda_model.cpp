// One full training step of the model on the GPU against the CPU model in fp32: the cross-entropy,
// the auxiliary losses and the gradient of every parameter after two micro-batches, for model
// variants covering every routing option (balancing losses of every lbl_scope, expert-bias
// balancing over optimizer steps). Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cuda/device.h"
#include "model/gpu/gpu_transformer.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "optim/grad_clip.h"
#include "model_variants.h"
#include "parallel/communicator.h"
#include "test_util.h"

namespace moe {
namespace {

// The CPU whole-model tests' variants (every routing option), and a one-layer model.
std::vector<test::ModelVariant> gpu_variants() {
  std::vector<test::ModelVariant> v = test::model_variants();
  v.push_back({"one_layer", {"model.n_layers=1"}});
  return v;
}

class CudaModel : public ::testing::TestWithParam<test::ModelVariant> {};

TEST_P(CudaModel, OneStepMatchesTheCpuModel) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  const test::ModelVariant v = GetParam();
  Config cfg = test::variant_config(v);
  auto comm = make_local_communicator();
  Transformer cpu(cfg.model, comm.get());
  cpu.params().initialize(11);
  gpu::GpuTransformer gpu(cfg.model, cpu.params());
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  Transformer from_gpu(cfg.model, comm.get());
  for (int m = 0; m < 2; ++m) {  // gradients accumulate over the two micro-batches
    std::vector<int32_t> tokens, targets;
    test::random_tokens(v.name, 5, m, B * S, cfg.model.vocab_size, tokens, targets);
    MicroBatchLoss want = cpu.forward_backward(tokens.data(), targets.data(), B, S, true, 0.5f);
    MicroBatchLoss got = gpu.forward_backward(tokens.data(), targets.data(), B, S, 0.5f);
    EXPECT_NEAR(got.ce, want.ce, 1e-5 * std::fabs(want.ce)) << "micro-batch " << m;
    EXPECT_NEAR(got.aux, want.aux, 1e-5 * std::fabs(want.aux) + 1e-8) << "micro-batch " << m;
    // every parameter's gradient, downloaded into a second store of the same shapes
    gpu.download_grads(from_gpu.params());
    for (Param* p : cpu.params().params()) {
      Param* q = from_gpu.params().find(p->name);
      ASSERT_NE(q, nullptr) << p->name;
      test::expect_tensor_close(q->grad, p->grad, p->name + " gradient after micro-batch " + std::to_string(m));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, CudaModel, ::testing::ValuesIn(gpu_variants()),
                         [](const auto& info) { return info.param.name; });

// Three optimizer steps (norm, clipping, AdamW on the GPU in one launch each; the expert-bias update
// and the global balancing counts at the end of each step) track the CPU trainer's components:
// losses, gradient norms, expert loads, the final weights and expert biases.
TEST(CudaModel, ThreeTrainingStepsTrackTheCpu) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  Config cfg = test::variant_config({"train", {"model.moe.num_shared_experts=1", "train.grad_clip=0.5",
                                               "model.moe.router.bias_update_rate=0.01", "model.moe.lbl_scope=global",
                                               "model.moe.score=sigmoid"}});
  auto comm = make_local_communicator();
  Transformer cpu(cfg.model, comm.get());
  cpu.params().initialize(21);
  AdamW opt(cfg.optim, cpu.params().params());
  gpu::GpuTransformer gpu(cfg.model, cpu.params());
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  for (int step = 0; step < 3; ++step) {
    std::vector<int32_t> tokens, targets;
    test::random_tokens("train", 9, step, B * S, cfg.model.vocab_size, tokens, targets);
    cpu.params().zero_grad();
    MicroBatchLoss want = cpu.forward_backward(tokens.data(), targets.data(), B, S, true, 1.0f);
    const double want_norm = global_grad_norm(cpu.params().params());
    clip_gradients(cpu.params().params(), want_norm, cfg.train.grad_clip);
    opt.step(1e-2);
    const auto want_loads = cpu.expert_loads();
    cpu.end_step();
    gpu.zero_grad();
    MicroBatchLoss got = gpu.forward_backward(tokens.data(), targets.data(), B, S, 1.0f);
    const double got_norm = gpu.optimizer_step(cfg.optim, 1e-2, cfg.train.grad_clip);
    EXPECT_EQ(gpu.expert_loads(), want_loads) << "step " << step + 1;
    gpu.end_step();
    EXPECT_NEAR(got.ce + got.aux, want.ce + want.aux, 1e-4 * (want.ce + want.aux)) << "step " << step + 1;
    EXPECT_NEAR(got_norm, want_norm, 1e-4 * want_norm) << "step " << step + 1;
  }
  Transformer from_gpu(cfg.model, comm.get());
  gpu.download_values(from_gpu.params());
  for (Param* p : cpu.params().params()) {
    Param* q = from_gpu.params().find(p->name);
    for (int64_t i = 0; i < p->value.numel(); ++i)
      ASSERT_NEAR(q->value.data()[i], p->value.data()[i], 1e-4 + 1e-3 * std::fabs(p->value.data()[i]))
          << p->name << " element " << i;
  }
  ASSERT_FALSE(cpu.params().buffers().empty());
  for (Buffer* b : cpu.params().buffers())  // expert biases: +-rate steps from the same loads
    EXPECT_EQ(test::max_abs_diff(from_gpu.params().find_buffer(b->name)->value.data(), b->value.data(),
                                 b->value.numel()),
              0.0)
        << b->name;
}

// train.precision: bf16 (bf16 matmul operands and expert activations, fp32 accumulation, master
// weights and losses) against fp32 from the same weights and data: the first gradients agree to
// bf16 precision, and training on one batch lowers both losses alike (their trajectories drift
// apart slowly, as any two precisions do, so the later steps get a looser bound).
TEST(CudaModel, Bf16TrainingTracksFp32) {
  if (!cuda::available()) GTEST_SKIP() << "no CUDA device on this machine";
  Config cfg = test::variant_config({"bf16", {"model.moe.num_shared_experts=1", "model.d_model=32",
                                              "model.moe.expert_hidden=32", "model.ffn_hidden=48"}});
  auto comm = make_local_communicator();
  Transformer host(cfg.model, comm.get());
  host.params().initialize(31);
  gpu::GpuTransformer fp32(cfg.model, host.params()), bf16(cfg.model, host.params(), /*bf16=*/true);
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  std::vector<int32_t> tokens, targets;  // one batch, trained on repeatedly: the loss must fall
  test::random_tokens("bf16", 13, 0, B * S, cfg.model.vocab_size, tokens, targets);
  double first = 0, last32 = 0, last16 = 0;
  for (int step = 0; step < 8; ++step) {
    fp32.zero_grad();
    bf16.zero_grad();
    MicroBatchLoss a = fp32.forward_backward(tokens.data(), targets.data(), B, S, 1.0f);
    MicroBatchLoss b = bf16.forward_backward(tokens.data(), targets.data(), B, S, 1.0f);
    if (step == 0) {  // same weights: the gradients differ by bf16 rounding only
      Transformer g32(cfg.model, comm.get()), g16(cfg.model, comm.get());
      fp32.download_grads(g32.params());
      bf16.download_grads(g16.params());
      double diff = 0, norm = 0;
      for (Param* p : g32.params().params()) {
        const Param* q = g16.params().find(p->name);
        for (int64_t i = 0; i < p->grad.numel(); ++i) {
          const double d = double(q->grad.data()[i]) - p->grad.data()[i];
          diff += d * d, norm += double(p->grad.data()[i]) * p->grad.data()[i];
        }
      }
      EXPECT_LT(std::sqrt(diff / norm), 3e-2) << "relative difference of all first-step gradients";
      EXPECT_NEAR(b.ce, a.ce, 0.01 * a.ce);
    }
    fp32.optimizer_step(cfg.optim, 3e-3, 1.0);
    bf16.optimizer_step(cfg.optim, 3e-3, 1.0);
    EXPECT_NEAR(b.ce, a.ce, 0.15 * a.ce) << "step " << step + 1;
    if (step == 0) first = a.ce;
    last32 = a.ce, last16 = b.ce;
  }
  EXPECT_LT(last32, 0.5 * first);
  EXPECT_LT(last16, 0.5 * first);
}

}  // namespace
}  // namespace moe
