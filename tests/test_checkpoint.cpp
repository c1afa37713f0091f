// HDF5 checkpoints: round trip, SPEC layout, keep, temporaries ignored, and refusal of missing,
// truncated, foreign, wrong-version and mismatched files with the file and problem named.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/transformer.h"
#include "model_variants.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "test_util.h"
#include "train/checkpoint.h"
#include "train/ckpt_tool.h"
#include "train/hdf5_io.h"

namespace moe {
namespace fs = std::filesystem;

struct Trained {
  Config cfg;
  std::unique_ptr<Communicator> comm = make_local_communicator();
  std::unique_ptr<Transformer> model;
  std::unique_ptr<AdamW> opt;
  explicit Trained(const std::vector<std::string>& sets, uint64_t seed = 5) {
    cfg = test::variant_config({"ckpt", sets});
    model = std::make_unique<Transformer>(cfg.model, comm.get());
    model->params().initialize(seed);
    opt = std::make_unique<AdamW>(cfg.optim, model->params().params());
    for (Param* p : model->params().params()) {
      auto g = test::random_vector(p->grad.numel(), seed + 1);
      std::copy(g.begin(), g.end(), p->grad.data());
    }
    opt->step(1e-3);
    for (Buffer* b : model->params().buffers()) b->value.data()[0] = 0.25f;
  }
};

using test::error_of;

TEST(Checkpoint, RoundTripRestoresModelOptimizerAndBuffers) {
  auto dir = test::temp_dir("ckpt_roundtrip");
  Trained a({"model.moe.router.bias_update_rate=0.1", "model.moe.num_shared_experts=1"});
  CheckpointMeta meta{7, 1000, 70, "yaml: text"};
  std::string path = save_checkpoint(dir, meta, a.model->params(), a.opt.get(), 3);
  EXPECT_EQ(fs::path(path).filename(), "step_00000007.h5");
  Trained b({"model.moe.router.bias_update_rate=0.1", "model.moe.num_shared_experts=1"}, 99);
  CheckpointMeta got = load_checkpoint(path, b.model->params(), b.opt.get());
  EXPECT_EQ(got.step, 7);
  EXPECT_EQ(got.tokens_seen, 1000);
  EXPECT_EQ(got.consumed_samples, 70);
  EXPECT_EQ(got.config_yaml, "yaml: text");
  EXPECT_EQ(b.opt->step_count(), 1);
  auto pa = a.model->params().params(), pb = b.model->params().params();
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(pa[i]->value.data(), pb[i]->value.data(), sizeof(float) * pa[i]->value.numel()))
        << pa[i]->name;
    for (int which : {0, 1})
      EXPECT_EQ(0, std::memcmp(a.opt->moment(i, which).data(), b.opt->moment(i, which).data(),
                               sizeof(float) * pa[i]->value.numel()));
  }
  EXPECT_FLOAT_EQ(b.model->params().buffers().at(0)->value.data()[0], 0.25f);
}

TEST(Checkpoint, LayoutFollowsSpecSection4) {
  auto dir = test::temp_dir("ckpt_layout");
  Trained a({"model.moe.num_shared_experts=2", "model.moe.shared_expert_hidden=5", "model.moe.first_dense_layers=1"});
  std::string path = save_checkpoint(dir, {3, 30, 3, "cfg"}, a.model->params(), a.opt.get(), 1);
  H5File f = H5File::open_read(path);
  EXPECT_EQ(f.get_string_attr("/", "format").value(), "moe-train-checkpoint");
  EXPECT_EQ(f.get_int_attr("/", "version").value(), 1);
  EXPECT_EQ(f.get_int_attr("/optim", "step").value(), 1);
  const int64_t V = 40, D = 16, E = 4, Fe = 12;
  EXPECT_EQ(f.dataset_shape("/model/embed/weight"), (Shape{V, D}));
  EXPECT_EQ(f.dataset_shape("/model/layers/0/ffn/w1"), (Shape{20, D}));
  EXPECT_EQ(f.dataset_shape("/model/layers/0/ffn/w2"), (Shape{D, 20}));
  EXPECT_EQ(f.dataset_shape("/model/layers/1/attn/wk"), (Shape{8, D}));  // 2 kv heads x hd 4
  EXPECT_EQ(f.dataset_shape("/model/layers/1/moe/router/weight"), (Shape{E, D}));
  EXPECT_EQ(f.dataset_shape("/model/layers/1/moe/experts/w1"), (Shape{E, Fe, D}));
  EXPECT_EQ(f.dataset_shape("/model/layers/1/moe/experts/w2"), (Shape{E, D, Fe}));
  EXPECT_EQ(f.dataset_shape("/model/layers/1/moe/shared/w3"), (Shape{10, D}));
  EXPECT_EQ(f.dataset_shape("/model/lm_head/weight"), (Shape{V, D}));
  EXPECT_EQ(f.dataset_shape("/optim/exp_avg_sq/layers/1/moe/experts/w2"), (Shape{E, D, Fe}));
  EXPECT_FALSE(f.exists("/model/layers/1/moe/router/expert_bias"));  // bias balancing off
}

TEST(Checkpoint, KeepsNewestAndIgnoresTemporaries) {
  auto dir = test::temp_dir("ckpt_keep");
  Trained a({});
  for (int s = 1; s <= 5; ++s) save_checkpoint(dir, {s, 0, 0, ""}, a.model->params(), a.opt.get(), 2);
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000004.h5", "step_00000005.h5"}));
  { std::ofstream(dir + "/step_00000009.h5.tmp") << "partial"; }
  EXPECT_EQ(fs::path(find_latest_checkpoint(dir).value()).filename(), "step_00000005.h5");
  EXPECT_FALSE(find_latest_checkpoint(dir + "/none").has_value());
}

TEST(Checkpoint, BadFilesAreRefusedWithFileAndProblem) {
  auto dir = test::temp_dir("ckpt_bad");
  Trained a({});
  std::string good = save_checkpoint(dir, {1, 0, 0, ""}, a.model->params(), a.opt.get(), 5);
  auto load = [&](const std::string& p, bool with_optim = true) {
    Trained b({});
    load_checkpoint(p, b.model->params(), with_optim ? b.opt.get() : nullptr);
  };
  auto msg = error_of([&] { load(dir + "/missing.h5"); });
  EXPECT_NE(msg.find("missing.h5"), std::string::npos);
  EXPECT_NE(msg.find("does not exist"), std::string::npos);

  std::string truncated = dir + "/truncated.h5";
  fs::copy_file(good, truncated);
  fs::resize_file(truncated, fs::file_size(good) / 2);
  msg = error_of([&] { load(truncated); });
  EXPECT_NE(msg.find("truncated.h5"), std::string::npos) << msg;

  std::string corrupt = dir + "/corrupt.h5";  // a flipped byte inside the data: checksum catches it
  fs::copy_file(good, corrupt);
  {
    std::fstream f(corrupt, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(std::streamoff(fs::file_size(good) - 200));
    char c;
    f.read(&c, 1);
    c ^= 0x5A;
    f.seekp(std::streamoff(fs::file_size(good) - 200));
    f.write(&c, 1);
  }
  msg = error_of([&] { load(corrupt); });
  EXPECT_NE(msg.find("corrupt.h5"), std::string::npos) << msg;

  std::string foreign = dir + "/foreign.h5";
  {
    H5File f = H5File::create(foreign);
    f.set_attr("/", "format", std::string("something-else"));
    f.close();
  }
  msg = error_of([&] { load(foreign); });
  EXPECT_NE(msg.find("format is 'something-else'"), std::string::npos) << msg;

  std::string textfile = dir + "/text.h5";
  { std::ofstream(textfile) << "not hdf5 at all"; }
  EXPECT_NE(error_of([&] { load(textfile); }).find("not a readable HDF5 file"), std::string::npos);

  std::string v2 = dir + "/v2.h5";
  {
    H5File f = H5File::create(v2);
    f.set_attr("/", "format", std::string("moe-train-checkpoint"));
    f.set_attr("/", "version", int64_t(2));
    f.close();
  }
  EXPECT_NE(error_of([&] { load(v2); }).find("version 2"), std::string::npos);

  msg = error_of([&] {
    Trained wider({"model.moe.expert_hidden=16"});
    load_checkpoint(good, wider.model->params(), nullptr);
  });
  EXPECT_NE(msg.find("experts/w1 has shape [4, 12, 16] but the config needs [4, 16, 16]"), std::string::npos) << msg;

  std::string model_only = dir + "/model_only";
  std::string mo = save_checkpoint(model_only, {2, 0, 0, ""}, a.model->params(), nullptr, 1);
  EXPECT_NE(error_of([&] { load(mo); }).find("use init_from"), std::string::npos);
  EXPECT_EQ(error_of([&] { load(mo, false); }), "");  // init_from reads /model only
}

TEST(CheckpointTool, VerifyAndDiffReportProblemsThroughTheirExitStatus) {
  auto dir = test::temp_dir("ckpt_tool");
  Trained a({"model.moe.router.bias_update_rate=0.1"});
  Config cfg = test::variant_config({"tool", {"model.moe.router.bias_update_rate=0.1"}});
  CheckpointMeta meta{1, 0, 0, config_to_yaml(cfg)};
  std::string p1 = save_checkpoint(dir, meta, a.model->params(), a.opt.get(), 5);
  EXPECT_EQ(ckpt_verify(p1), 0);
  EXPECT_EQ(ckpt_info(p1), 0);
  meta.step = 2;
  std::string p2 = save_checkpoint(dir, meta, a.model->params(), a.opt.get(), 5);
  EXPECT_EQ(ckpt_diff(p1, p2, 0, 0), 0);  // the same tensors
  a.model->params().params()[0]->value.data()[3] += 0.5f;
  meta.step = 3;
  std::string p3 = save_checkpoint(dir, meta, a.model->params(), a.opt.get(), 5);
  EXPECT_EQ(ckpt_diff(p1, p3, 0, 0), 1);
  EXPECT_EQ(ckpt_diff(p1, p3, 0.6, 0), 0);  // within tolerance
  // a checkpoint whose stored config describes another model fails verification
  Config other = cfg;
  other.model.moe.expert_hidden = 16;
  meta.step = 4;
  meta.config_yaml = config_to_yaml(other);
  std::string p4 = save_checkpoint(dir, meta, a.model->params(), a.opt.get(), 5);
  EXPECT_EQ(ckpt_verify(p4), 1);
  // a truncated file
  fs::resize_file(p2, fs::file_size(p2) / 2);
  EXPECT_EQ(ckpt_verify(p2), 1);
  EXPECT_EQ(ckpt_diff(p1, p2, 0, 0), 2);
}

}  // namespace moe
