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
#include "core/median.h"
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

// The disk's sequential write speed as a checkpoint would see it: a new file of `bytes` in 4 MiB
// write() calls, fsync'd, then deleted. MB/s.
static double disk_write_mb_s(const std::string& path, size_t bytes) {
  const size_t block = 4u << 20;
  std::vector<char> buf(block, 'x');
  const double t0 = now_ms();
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    MOE_CHECK(f, "cannot write '" << path << "'");
    for (size_t done = 0; done < bytes; done += block) {
      const size_t n = std::min(block, bytes - done);
      MOE_CHECK(std::fwrite(buf.data(), 1, n, f) == n, "writing '" << path << "' failed (disk full?)");
    }
    std::fflush(f);
    ::fsync(fileno(f));
    std::fclose(f);
  }
  const double s = (now_ms() - t0) / 1000.0;
  std::filesystem::remove(path);
  return double(bytes) / 1e6 / s;
}

int ckpt_bench(const std::string& dir, const std::string& config_path) {
  try {
    namespace fs = std::filesystem;
    fs::create_directories(dir);
    Config cfg = load_config(config_path);
    cfg.finalize(1, /*need_data=*/false);
    auto comm = make_local_communicator();
    Transformer model(cfg.model, comm.get());
    model.params().initialize(1);
    AdamW optim(cfg.optim, model.params().params());
    // The first snapshot pays for fresh pages; a training run refills the same buffers after that.
    CheckpointMeta meta{1, 0, 0, config_to_yaml(cfg)};
    double t0 = now_ms();
    CheckpointSnapshot snap = take_checkpoint_snapshot(meta, model.params(), &optim, {});
    const double first_copy_s = (now_ms() - t0) / 1000.0;
    t0 = now_ms();
    snap = take_checkpoint_snapshot(meta, model.params(), &optim, {}, std::move(snap));
    const double copy_s = (now_ms() - t0) / 1000.0;
    size_t bytes = 0;
    for (const auto& e : snap.entries) bytes += e.data.size() * sizeof(float);

    // Rounds of (disk, checkpoint) so both see the same state of the page cache and the device;
    // the ratio is taken per round, and the median round is reported.
    const std::string path = checkpoint_path(dir, meta.step);
    const int rounds = 3;
    std::vector<double> disk, save, load, ratio;
    double mb = 0;
    for (int r = 0; r < rounds; ++r) {
      fs::remove(path);
      disk.push_back(disk_write_mb_s(dir + "/disk_speed.bin", bytes));
      t0 = now_ms();
      write_checkpoint(dir, snap, 1, nullptr);
      const double save_s = (now_ms() - t0) / 1000.0;
      mb = double(fs::file_size(path)) / 1e6;
      save.push_back(mb / save_s);
      ratio.push_back(save.back() / disk.back());
      t0 = now_ms();
      load_checkpoint(path, model.params(), &optim);
      load.push_back(mb / ((now_ms() - t0) / 1000.0));
      std::printf("round %d: disk %.0f MB/s, checkpoint write %.0f MB/s (%.0f%%), load %.0f MB/s\n", r + 1,
                  disk.back(), save.back(), 100.0 * ratio.back(), load.back());
    }
    std::printf("checkpoint %s: %.1f MB\n", path.c_str(), mb);
    std::printf("snapshot into host buffers (training stalls this long): %.2f s (first, fresh pages: %.2f s)\n",
                copy_s, first_copy_s);
    std::printf("disk sequential write (%.0f MB, fsync), median: %.0f MB/s\n", double(bytes) / 1e6, median(disk));
    std::printf("write (in the background during training), median: %.0f MB/s = %.0f%% of the disk's sequential "
                "write speed (median of the per-round ratios)\n", median(save), 100.0 * median(ratio));
    std::printf("load, median: %.0f MB/s\n", median(load));
    return 0;
  } catch (const Error& e) {
    std::printf("error: %s\n", e.message().c_str());
    return 2;
  }
}

}  // namespace moe
