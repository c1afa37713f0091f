// Checkpoint save/load.
#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "parallel/mpi_handle.h"
#include "train/hdf5_io.h"

namespace moe {
namespace fs = std::filesystem;

std::string checkpoint_path(const std::string& dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

static void fsync_path(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// Starts the kernel's writeback of a file being written (Linux sync_file_range, asynchronous) every
// kStep bytes handed to it, so the disk works while later tensors are still being written and the
// final fsync has little left to do. Opens its own descriptor: HDF5 owns the writing one.
class EarlyWriteback {
 public:
  explicit EarlyWriteback(const std::string& path) : fd_(::open(path.c_str(), O_RDONLY)) {}
  ~EarlyWriteback() {
    if (fd_ >= 0) ::close(fd_);
  }
  EarlyWriteback(const EarlyWriteback&) = delete;
  EarlyWriteback& operator=(const EarlyWriteback&) = delete;
  void wrote(size_t bytes) {
    pending_ += bytes;
    if (pending_ < kStep || fd_ < 0) return;
    pending_ = 0;
#ifdef SYNC_FILE_RANGE_WRITE
    ::sync_file_range(fd_, 0, 0, SYNC_FILE_RANGE_WRITE);  // a hint: failure only loses the overlap
#endif
  }

 private:
  static constexpr size_t kStep = 64u << 20;
  int fd_;
  size_t pending_ = 0;
};

static std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex pattern("step_([0-9]{8})\\.h5");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (e.is_regular_file(ec) && std::regex_match(name, m, pattern)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

int remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return 0;
  static const std::regex pattern("step_[0-9]{8}\\.h5\\.tmp");
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (std::regex_match(e.path().filename().string(), pattern) && fs::remove(e.path(), ec)) ++n;
  return n;
}

std::vector<std::string> list_checkpoints_newest_first(const std::string& dir) {
  std::vector<std::string> out;
  auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) out.push_back(it->second);
  return out;
}

std::optional<std::string> find_latest_checkpoint(const std::string& dir) {
  auto all = list_checkpoints(dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

// Which rank writes a parameter's slice: the first replica of each slice.
static bool writes(const Param& p, const CheckpointComms& c) {
  const int r = c.world ? c.world->rank() : 0;
  if (!p.sharded()) return r == 0;
  if (p.split == Split::Ep) return r < (c.ep ? c.ep->size() : 1);   // expert-dp rank 0
  return r < (c.tp ? c.tp->size() : 1);                              // dp rank 0
}

CheckpointSnapshot take_checkpoint_snapshot(const CheckpointMeta& meta, ParamStore& params, AdamW* optim,
                                            CheckpointComms comms, CheckpointSnapshot reuse) {
  CheckpointSnapshot snap;
  snap.meta = meta;
  const bool root = !comms.world || comms.world->rank() == 0;
  size_t n = 0;
  auto put = [&](CheckpointSnapshot::Entry e, const float* data, int64_t count) {
    if (n < reuse.entries.size()) e.data.swap(reuse.entries[n].data);  // same slot, same size: no new pages
    ++n;
    if (e.active) e.data.assign(data, data + count);
    snap.entries.push_back(std::move(e));
  };
  auto add = [&](const std::string& path, const Param& p, const Tensor& local) {
    put({path, p.full_shape, local.shape(), p.shard_dim, p.shard_offset, writes(p, comms), {}}, local.data(),
        local.numel());
  };
  for (Param* p : params.params()) add("/model/" + p->name, *p, p->value);
  for (Buffer* b : params.buffers())
    put({"/model/" + b->name, b->value.shape(), b->value.shape(), 0, 0, root, {}}, b->value.data(), b->value.numel());
  if (optim) {
    const auto& ps = optim->params();
    for (size_t i = 0; i < ps.size(); ++i) {
      add("/optim/exp_avg/" + ps[i]->name, *ps[i], optim->moment(i, 0));  // collective under ZeRO
      add("/optim/exp_avg_sq/" + ps[i]->name, *ps[i], optim->moment(i, 1));
    }
    snap.optim_step = optim->step_count();
  }
  return snap;
}

std::string write_checkpoint(const std::string& dir, const CheckpointSnapshot& snap, int keep, Communicator* io) {
  const std::string final_path = checkpoint_path(dir, snap.meta.step);
  const std::string tmp_path = final_path + ".tmp";
  const bool root = !io || io->rank() == 0;
  MPI_Comm mpi_comm;
  const bool parallel = io && io->size() > 1 && mpi_comm_of(*io, &mpi_comm);
  MOE_CHECK(parallel || !io || io->size() == 1,
            "checkpoint: several ranks but no MPI communicator to write '" << final_path << "' with");
  if (root) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    MOE_CHECK(!ec, "checkpoint.dir '" << dir << "' cannot be created: " << ec.message());
  }
  if (parallel) io->barrier();  // the directory exists before anyone opens the file
  {
    H5File f = parallel ? H5File::create_parallel(tmp_path, mpi_comm) : H5File::create(tmp_path);
    f.set_attr("/", "format", std::string(kCheckpointFormat));
    f.set_attr("/", "version", kCheckpointVersion);
    f.set_attr("/", "step", snap.meta.step);
    f.set_attr("/", "tokens_seen", snap.meta.tokens_seen);
    f.set_attr("/", "consumed_samples", snap.meta.consumed_samples);
    f.set_attr("/", "config", snap.meta.config_yaml);
    EarlyWriteback writeback(tmp_path);
    for (const auto& e : snap.entries) {
      f.write_floats_slice(e.path, e.full_shape, e.dim, e.offset, e.local_shape, e.data.data(), e.active);
      writeback.wrote(e.active ? e.data.size() * sizeof(float) : 0);
    }
    if (snap.optim_step >= 0) f.set_attr("/optim", "step", snap.optim_step);
    f.close();  // collective flush (MPI-IO sync of every rank's writes) and close
  }
  if (root) {
    fsync_path(tmp_path, false);
    std::error_code ec;
    fs::rename(tmp_path, final_path, ec);
    MOE_CHECK(!ec, "checkpoint '" << final_path << "': rename from temporary failed: " << ec.message());
    fsync_path(dir, true);
    auto all = list_checkpoints(dir);
    for (size_t i = 0; i + size_t(keep) < all.size(); ++i) fs::remove(all[i].second, ec);
  }
  if (parallel) io->barrier();  // complete for everybody once rank 0 renamed it
  return final_path;
}

std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, ParamStore& params, AdamW* optim,
                            int keep, CheckpointComms comms) {
  return write_checkpoint(dir, take_checkpoint_snapshot(meta, params, optim, comms), keep, comms.world);
}

static void check_shape(const H5File& f, const std::string& path, const Shape& want) {
  auto got = f.dataset_shape(path);
  MOE_CHECK(got == want, "checkpoint '" << f.path() << "': " << path << " has shape " << shape_str(got)
                                        << " but the config needs " << shape_str(want));
}

CheckpointMeta load_checkpoint(const std::string& path, ParamStore& params, AdamW* optim) {
  H5File f = H5File::open_read(path);
  auto format = f.get_string_attr("/", "format");
  MOE_CHECK(format.has_value(), "checkpoint '" << path << "': no 'format' attribute (not a moe-train checkpoint)");
  MOE_CHECK(*format == kCheckpointFormat,
            "checkpoint '" << path << "': format is '" << *format << "', expected '" << kCheckpointFormat << "'");
  auto version = f.get_int_attr("/", "version");
  MOE_CHECK(version.has_value() && *version == kCheckpointVersion,
            "checkpoint '" << path << "': version " << (version ? std::to_string(*version) : "missing")
                           << " is not supported (expected " << kCheckpointVersion << ")");
  CheckpointMeta meta;
  meta.step = f.get_int_attr("/", "step").value_or(0);
  meta.tokens_seen = f.get_int_attr("/", "tokens_seen").value_or(0);
  meta.consumed_samples = f.get_int_attr("/", "consumed_samples").value_or(0);
  meta.config_yaml = f.get_string_attr("/", "config").value_or("");

  // Validate everything before touching the model.
  for (Param* p : params.params()) check_shape(f, "/model/" + p->name, p->full_shape);
  for (Buffer* b : params.buffers()) {
    std::string bp = "/model/" + b->name;
    if (optim || f.exists(bp)) check_shape(f, bp, b->value.shape());
  }
  if (optim) {
    MOE_CHECK(f.get_int_attr("/optim", "step").has_value(),
              "checkpoint '" << path << "': /optim has no 'step' attribute (a model-only file: use init_from)");
    for (Param* p : params.params()) {
      check_shape(f, "/optim/exp_avg/" + p->name, p->full_shape);
      check_shape(f, "/optim/exp_avg_sq/" + p->name, p->full_shape);
    }
  }

  // Read into scratch first so a corrupt dataset leaves the model untouched. A shard reads its rows.
  auto read = [&](const std::string& path, const Param& p) {
    Tensor t = Tensor::empty(p.value.shape());
    if (p.sharded()) {
      f.read_floats_slice(path, p.shard_dim, p.shard_offset, p.value.dim(p.shard_dim), t.data());
    } else {
      f.read_floats(path, t.data());
    }
    return t;
  };
  std::vector<Tensor> values;
  for (Param* p : params.params()) values.push_back(read("/model/" + p->name, *p));
  std::vector<Tensor> bufs;
  for (Buffer* b : params.buffers()) {
    bufs.push_back(Tensor::zeros(b->value.shape()));
    if (f.exists("/model/" + b->name)) f.read_floats("/model/" + b->name, bufs.back().data());
  }
  std::vector<Tensor> ms, vs;
  if (optim) {
    for (Param* p : params.params()) {
      ms.push_back(read("/optim/exp_avg/" + p->name, *p));
      vs.push_back(read("/optim/exp_avg_sq/" + p->name, *p));
    }
  }
  auto ps = params.params();
  for (size_t i = 0; i < ps.size(); ++i) ps[i]->value.copy_from(values[i]);
  auto bs = params.buffers();
  for (size_t i = 0; i < bs.size(); ++i) bs[i]->value.copy_from(bufs[i]);
  if (optim) {
    for (size_t i = 0; i < ps.size(); ++i) {
      optim->set_moment(i, 0, ms[i]);
      optim->set_moment(i, 1, vs[i]);
    }
    optim->set_step_count(*f.get_int_attr("/optim", "step"));
  }
  return meta;
}

}  // namespace moe
