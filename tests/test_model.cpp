// Whole-model tests on tiny configs covering every routing option: the forward loss against the
// independent plain-loop reference of SPEC (reference_model.cpp), and every parameter gradient
// against finite differences of that loss, over a two-micro-batch optimizer step.
#include <gtest/gtest.h>

#include <cmath>

#include "model/transformer.h"
#include "model_variants.h"
#include "parallel/communicator.h"
#include "reference_model.h"
#include "test_util.h"

namespace moe {
namespace {

struct Fixture {
  Config cfg;
  std::unique_ptr<Communicator> comm = make_local_communicator();
  std::unique_ptr<Transformer> model;
  std::vector<std::vector<int32_t>> tokens, targets;  // two micro-batches
  std::vector<std::vector<float>> saved_buffers;
  int64_t B, S;

  explicit Fixture(const test::ModelVariant& v) : cfg(test::variant_config(v)) {
    model = std::make_unique<Transformer>(cfg.model, comm.get());
    model->params().initialize(11);
    B = cfg.train.micro_batch;
    S = cfg.train.seq_len;
    for (int m = 0; m < 2; ++m) {
      std::vector<int32_t> tk, tg;
      test::random_tokens(v.name, 5, m, B * S, cfg.model.vocab_size, tk, tg);
      tokens.push_back(tk);
      targets.push_back(tg);
    }
    // A non-trivial expert bias where bias balancing is on (selection only).
    for (Buffer* b : model->params().buffers()) {
      auto r = test::random_vector(b->value.numel(), 3, 0.2f);
      std::copy(r.begin(), r.end(), b->value.data());
      saved_buffers.emplace_back(r);
    }
  }

  // The step objective: mean over the two micro-batches of (ce + aux); gradients accumulate.
  double step_objective() {
    double total = 0;
    for (int m = 0; m < 2; ++m) {
      auto l = model->forward_backward(tokens[m].data(), targets[m].data(), B, S, true, 0.5f);
      total += 0.5 * (l.ce + l.aux);
    }
    model->end_step();
    auto bufs = model->params().buffers();
    for (size_t i = 0; i < bufs.size(); ++i) std::copy(saved_buffers[i].begin(), saved_buffers[i].end(), bufs[i]->value.data());
    return total;
  }
};

class ModelTest : public ::testing::TestWithParam<test::ModelVariant> {};

TEST_P(ModelTest, ForwardMatchesPlainLoopReference) {
  Fixture f(GetParam());
  test::ReferenceStepState state;
  for (int m = 0; m < 2; ++m) {
    auto got = f.model->forward_backward(f.tokens[m].data(), f.targets[m].data(), f.B, f.S, true, 0.5f);
    auto want = test::reference_forward(f.cfg, f.model->params(), f.tokens[m], f.targets[m], f.B, f.S, state);
    EXPECT_NEAR(got.ce, want.ce, 2e-5 * std::fabs(want.ce)) << "micro-batch " << m;
    EXPECT_NEAR(got.aux, want.aux, 1e-6 + 1e-5 * std::fabs(want.aux)) << "micro-batch " << m;
    if (f.cfg.model.moe.num_experts > 0) {
      EXPECT_GT(want.aux, 0.0);
    }
  }
}

TEST_P(ModelTest, EveryParameterGradientMatchesFiniteDifferences) {
  Fixture f(GetParam());
  f.model->params().zero_grad();
  f.step_objective();
  auto params = f.model->params().params();
  std::vector<std::vector<float>> grads;
  for (Param* p : params) grads.emplace_back(p->grad.data(), p->grad.data() + p->grad.numel());

  const double eps = std::getenv("MOE_FD_EPS") ? std::atof(std::getenv("MOE_FD_EPS")) : 1e-3;  // small enough that no top-k choice flips
  for (size_t pi = 0; pi < params.size(); ++pi) {
    Param* p = params[pi];
    const int64_t n = p->value.numel();
    // Directional derivative along a random unit direction covers every element of the tensor.
    auto dir = test::random_vector(n, 100 + pi);
    double norm = 0;
    for (float d : dir) norm += double(d) * d;
    norm = std::sqrt(norm);
    double analytic = 0;
    for (int64_t i = 0; i < n; ++i) analytic += double(grads[pi][i]) * dir[i] / norm;
    std::vector<float> saved(p->value.data(), p->value.data() + n);
    auto shifted = [&](double s) {
      for (int64_t i = 0; i < n; ++i) p->value.data()[i] = saved[i] + float(s * dir[i] / norm);
      double v = f.step_objective();
      std::copy(saved.begin(), saved.end(), p->value.data());
      return v;
    };
    double numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
    EXPECT_NEAR(analytic, numeric, 1e-3 + 2e-2 * std::fabs(numeric)) << p->name;
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, ModelTest, ::testing::ValuesIn(test::model_variants()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace moe
