// Config parsing: defaults, --set overrides, and errors that name the key and the rule.
#include <gtest/gtest.h>

#include "core/config.h"
#include "core/error.h"

namespace moe {

static const char* kBase = R"(
model: {vocab_size: 256, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 32,
        moe: {num_experts: 4, top_k: 2, expert_hidden: 32}}
train: {seq_len: 32, global_batch: 8, micro_batch: 2, steps: 10}
data: {train: t.bin}
)";

static std::string error_of(const std::string& yaml, const std::vector<std::string>& sets = {}) {
  try {
    Config c = parse_config(yaml, "cfg.yaml", sets);
    c.finalize(1);
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

TEST(Config, DefaultsAreFilledFromSpec) {
  Config c = parse_config(kBase, "cfg.yaml");
  c.finalize(1);
  EXPECT_EQ(c.model.n_kv_heads, 4);
  EXPECT_EQ(c.model.moe.score, "softmax");
  EXPECT_TRUE(c.model.moe.norm_topk);
  EXPECT_DOUBLE_EQ(c.model.moe.aux_loss_coef, 0.01);
  EXPECT_DOUBLE_EQ(c.model.rope_theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.optim.beta2, 0.95);
  EXPECT_EQ(c.checkpoint.keep, 3);
  EXPECT_EQ(c.checkpoint.resume, "auto");
  EXPECT_EQ(c.grad_accum_steps(1), 4);
}

TEST(Config, SetOverridesAndCreatesKeys) {
  Config c = parse_config(kBase, "cfg.yaml", {"model.moe.score=sigmoid", "optim.lr=0.01", "data.shuffle=false"});
  c.finalize(1);
  EXPECT_EQ(c.model.moe.score, "sigmoid");
  EXPECT_DOUBLE_EQ(c.optim.lr, 0.01);
  EXPECT_FALSE(c.data.shuffle);
}

TEST(Config, ResolvedYamlRoundTrips) {
  Config c = parse_config(kBase, "cfg.yaml", {"model.moe.lbl_scope=seq"});
  c.finalize(1);
  Config d = parse_config(config_to_yaml(c), "resolved.yaml");
  d.finalize(1);
  EXPECT_EQ(config_to_yaml(c), config_to_yaml(d));
  EXPECT_EQ(d.model.moe.lbl_scope, "seq");
}

TEST(Config, ErrorsNameTheKeyAndTheRule) {
  EXPECT_NE(error_of(kBase, {"model.dmodel=3"}).find("unknown key 'model.dmodel'"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"model.d_model=abc"}).find("'model.d_model' must be an integer"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"model.n_heads=5"}).find("model.d_model"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"model.n_kv_heads=3"}).find("model.n_kv_heads"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"model.moe.top_k=5"}).find("model.moe.top_k"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"model.moe.score=relu"}).find("softmax or sigmoid"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"model.moe.lbl_scope=batch"}).find("model.moe.lbl_scope"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"train.global_batch=7"}).find("train.global_batch"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"train.seq_len=64"}).find("train.seq_len"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"parallel.tp=2"}).find("parallel.tp"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"optim.schedule=step"}).find("optim.schedule"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"data.token_dtype=int8"}).find("data.token_dtype"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"train.precision=fp16"}).find("must be fp32 or bf16"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"data.train="}).find("data.train"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"train.eval_every=5"}).find("data.valid"), std::string::npos);
  EXPECT_NE(error_of("model: [1, 2]").find("'model' must be a mapping"), std::string::npos);
  EXPECT_NE(error_of("model: {d_model: 4").find("not valid YAML"), std::string::npos);
  EXPECT_NE(error_of(kBase, {"nokey"}).find("--set expects key=value"), std::string::npos);
  EXPECT_EQ(error_of(kBase), "");
}

TEST(Config, MissingFileIsNamed) {
  try {
    load_config("/nonexistent/x.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/nonexistent/x.yaml"), std::string::npos);
  }
}

}  // namespace moe
