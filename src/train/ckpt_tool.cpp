// moe-ckpt subcommands.
#include "train/ckpt_tool.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <set>

#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/profiler.h"
#include "model/transformer.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "train/checkpoint.h"
#include "train/hdf5_io.h"

namespace moe {

static std::vector<float> read_all(const H5File& f, const std::string& name) {
  std::vector<float> v(size_t(shape_numel(f.dataset_shape(name))));
  f.read_floats(name, v.data());
  return v;
}

int ckpt_info(const std::string& path) {
  try {
    H5File f = H5File::open_read(path);
    std::printf("file: %s\n", path.c_str());
    std::printf("format: %s, version %lld\n", f.get_string_attr("/", "format").value_or("?").c_str(),
                (long long)f.get_int_attr("/", "version").value_or(-1));
    std::printf("step: %lld\ntokens_seen: %lld\nconsumed_samples: %lld\n",
                (long long)f.get_int_attr("/", "step").value_or(-1),
                (long long)f.get_int_attr("/", "tokens_seen").value_or(-1),
                (long long)f.get_int_attr("/", "consumed_samples").value_or(-1));
    if (auto s = f.get_int_attr("/optim", "step")) std::printf("optimizer updates: %lld\n", (long long)*s);
    int64_t total = 0;
    std::printf("tensors:\n");
    for (const auto& name : f.list_datasets()) {
      Shape shape = f.dataset_shape(name);
      total += shape_numel(shape);
      std::printf("  %-52s %-18s %10.3f MB\n", name.c_str(), shape_str(shape).c_str(), shape_numel(shape) * 4e-6);
    }
    std::printf("total: %lld float32 values, %.3f MB\n", (long long)total, total * 4e-6);
    std::printf("config:\n%s", f.get_string_attr("/", "config").value_or("(none)\n").c_str());
    return 0;
  } catch (const Error& e) {
    std::printf("error: %s\n", e.message().c_str());
    return 2;
  }
}

int ckpt_verify(const std::string& path) {
  try {
    H5File f = H5File::open_read(path);
    auto yaml = f.get_string_attr("/", "config");
    MOE_CHECK(yaml.has_value(), "checkpoint '" << path << "': no stored config to verify the shapes against");
    Config cfg = parse_config(*yaml, path + " (stored config)");
    cfg.parallel = ParallelConfig{};  // the logical shapes do not depend on the layout that wrote it
    cfg.train.global_batch = 0;       // (nor on the batch layout)
    cfg.finalize(1, /*need_data=*/false);
    auto comm = make_local_communicator();
    Transformer model(cfg.model, comm.get());
    AdamW optim(cfg.optim, model.params().params());
    const bool has_optim = f.exists("/optim");
    // load_checkpoint checks format, version and every shape, then reads every tensor (checksums).
    load_checkpoint(path, model.params(), has_optim ? &optim : nullptr);
    std::set<std::string> expected;
    for (Param* p : model.params().params()) {
      expected.insert("/model/" + p->name);
      if (has_optim) {
        expected.insert("/optim/exp_avg/" + p->name);
        expected.insert("/optim/exp_avg_sq/" + p->name);
      }
    }
    for (Buffer* b : model.params().buffers()) expected.insert("/model/" + b->name);
    for (const auto& name : f.list_datasets())
      MOE_CHECK(expected.count(name), "checkpoint '" << path << "': " << name << " is not part of the stored config's model");
    std::printf("ok: %s (step %lld, %zu tensors, checksums and shapes verified%s)\n", path.c_str(),
                (long long)f.get_int_attr("/", "step").value_or(-1), expected.size(),
                has_optim ? ", optimizer state included" : ", model only");
    return 0;
  } catch (const Error& e) {
    std::printf("FAILED: %s\n", e.message().c_str());
    return 1;
  }
}

int ckpt_diff(const std::string& a_path, const std::string& b_path, double atol, double rtol) {
  try {
    H5File a = H5File::open_read(a_path), b = H5File::open_read(b_path);
    auto na = a.list_datasets(), nb = b.list_datasets();
    std::set<std::string> names(na.begin(), na.end());
    names.insert(nb.begin(), nb.end());
    int differ = 0;
    std::printf("%-52s %14s %14s\n", "tensor", "max_abs_diff", "max_rel_diff");
    for (const auto& name : names) {
      if (!a.exists(name) || !b.exists(name)) {
        std::printf("%-52s only in %s\n", name.c_str(), a.exists(name) ? a_path.c_str() : b_path.c_str());
        ++differ;
        continue;
      }
      if (a.dataset_shape(name) != b.dataset_shape(name)) {
        std::printf("%-52s shapes %s and %s\n", name.c_str(), shape_str(a.dataset_shape(name)).c_str(),
                    shape_str(b.dataset_shape(name)).c_str());
        ++differ;
        continue;
      }
      auto x = read_all(a, name), y = read_all(b, name);
      double max_abs = 0, max_rel = 0;
      bool bad = false;
      for (size_t i = 0; i < x.size(); ++i) {
        double d = std::fabs(double(x[i]) - double(y[i])), mag = std::fabs(double(y[i]));
        max_abs = std::max(max_abs, d);
        if (mag > 0) max_rel = std::max(max_rel, d / mag);
        if (d > atol + rtol * mag || std::isnan(d)) bad = true;
      }
      differ += bad;
      std::printf("%-52s %14.6g %14.6g%s\n", name.c_str(), max_abs, max_rel, bad ? "  DIFFERS" : "");
    }
    std::printf("%d of %zu tensors differ (atol %g, rtol %g)\n", differ, names.size(), atol, rtol);
    return differ ? 1 : 0;
  } catch (const Error& e) {
    std::printf("error: %s\n", e.message().c_str());
    return 2;
  }
}

int ckpt_bench(const std::string& dir, const std::string& config_path) {
  try {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    // 1. the disk: sequential write + fsync
    const std::string raw = dir + "/disk_speed.bin";
    const size_t block = 4u << 20, blocks = 128;
    std::vector<char> buf(block, 'x');
    double t0 = now_ms();
    {
      FILE* f = std::fopen(raw.c_str(), "wb");
      MOE_CHECK(f, "cannot write '" << raw << "'");
      for (size_t i = 0; i < blocks; ++i) MOE_CHECK(std::fwrite(buf.data(), 1, block, f) == block, "write failed");
      std::fflush(f);
      ::fsync(fileno(f));
      std::fclose(f);
    }
    const double disk_mb_s = double(block * blocks) / 1e6 / ((now_ms() - t0) / 1000.0);
    fs::remove(raw);
    // 2. a checkpoint of the configured model
    Config cfg = load_config(config_path);
    cfg.finalize(1, /*need_data=*/false);
    auto comm = make_local_communicator();
    Transformer model(cfg.model, comm.get());
    model.params().initialize(1);
    AdamW optim(cfg.optim, model.params().params());
    // The first snapshot pays for fresh pages; a training run refills the same buffers after that.
    CheckpointMeta meta{1, 0, 0, config_to_yaml(cfg)};
    t0 = now_ms();
    CheckpointSnapshot snap = take_checkpoint_snapshot(meta, model.params(), &optim, {});
    const double first_copy_s = (now_ms() - t0) / 1000.0;
    t0 = now_ms();
    snap = take_checkpoint_snapshot(meta, model.params(), &optim, {}, std::move(snap));
    const double copy_s = (now_ms() - t0) / 1000.0;
    t0 = now_ms();
    std::string path = write_checkpoint(dir, snap, 1, nullptr);
    const double save_s = (now_ms() - t0) / 1000.0, mb = double(fs::file_size(path)) / 1e6;
    t0 = now_ms();
    load_checkpoint(path, model.params(), &optim);
    const double load_s = (now_ms() - t0) / 1000.0;
    std::printf("disk sequential write (512 MB, fsync): %.0f MB/s\n", disk_mb_s);
    std::printf("checkpoint %s: %.1f MB\n", path.c_str(), mb);
    std::printf("snapshot into host buffers (training stalls this long): %.2f s (first, fresh pages: %.2f s)\n",
                copy_s, first_copy_s);
    std::printf("write (in the background during training): %.2f s, %.0f MB/s (%.0f%% of the disk's sequential "
                "write speed)\n", save_s, mb / save_s, 100.0 * mb / save_s / disk_mb_s);
    std::printf("load: %.2f s, %.0f MB/s\n", load_s, mb / load_s);
    return 0;
  } catch (const Error& e) {
    std::printf("error: %s\n", e.message().c_str());
    return 2;
  }
}

}  // namespace moe
