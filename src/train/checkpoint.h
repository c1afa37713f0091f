// HDF5 checkpoints in the layout of SPEC section 4: one file per step, written to a temporary name,
// fsynced and renamed; the `keep` newest kept. Loading checks format, version and every shape
// against the model before reading anything into it.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/params.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"

namespace moe {

inline constexpr const char* kCheckpointFormat = "moe-train-checkpoint";
inline constexpr int64_t kCheckpointVersion = 1;

struct CheckpointMeta {
  int64_t step = 0;
  int64_t tokens_seen = 0;
  int64_t consumed_samples = 0;
  std::string config_yaml;
};

std::string checkpoint_path(const std::string& dir, int64_t step);  // <dir>/step_00000012.h5

// What a save writes, copied out of the model and optimizer into host buffers, so that the file
// can be written while training goes on (async_checkpoint.h). Each entry is this rank's slice.
struct CheckpointSnapshot {
  struct Entry {
    std::string path;           // "/model/...", "/optim/exp_avg/..."
    Shape full_shape, local_shape;
    int dim = 0;
    int64_t offset = 0;
    bool active = false;        // this rank writes its slice
    std::vector<float> data;    // empty when !active
  };
  CheckpointMeta meta;
  std::vector<Entry> entries;
  int64_t optim_step = -1;      // < 0: no optimizer state
};

// The groups a save runs over: world (null: one rank), tp and ep (null: size 1).
struct CheckpointComms {
  Communicator* world = nullptr;
  Communicator* tp = nullptr;
  Communicator* ep = nullptr;
};

// Writes the model (parameters and buffers) and, when optim is non-null, the AdamW moments, every
// tensor at its full logical shape. Collective over the world: with several MPI ranks the file is
// written through parallel HDF5 (MPI-IO), each slice of a split tensor by the rank that owns it
// (replicas: the first one) and replicated tensors by rank 0; ZeRO-1 moment shards are gathered over
// dp first. Rank 0 then fsyncs, renames and deletes all but the `keep` newest step files. Returns
// the final path.
std::string save_checkpoint(const std::string& dir, const CheckpointMeta& meta, ParamStore& params,
                            AdamW* optim, int keep, CheckpointComms comms = {});

// The two halves of save_checkpoint. take_checkpoint_snapshot copies this rank's slices (collective
// under ZeRO-1: moment shards are gathered over dp). write_checkpoint writes the file and is
// collective over io_world (null or one rank: a single-process save), which must not be used by
// another thread meanwhile: the async writer gives it a communicator of its own.
// `reuse`: a snapshot of the same model taken earlier, whose buffers are refilled (no new pages).
CheckpointSnapshot take_checkpoint_snapshot(const CheckpointMeta& meta, ParamStore& params, AdamW* optim,
                                            CheckpointComms comms, CheckpointSnapshot reuse = {});
std::string write_checkpoint(const std::string& dir, const CheckpointSnapshot& snapshot, int keep,
                             Communicator* io_world);

// Newest complete step_<8 digits>.h5 in dir (temporaries are ignored), if any.
std::optional<std::string> find_latest_checkpoint(const std::string& dir);
// Removes temporaries (step_*.h5.tmp) a crash left behind; returns how many. Never complete files.
int remove_stale_temporaries(const std::string& dir);
// Every step_<8 digits>.h5 in dir, newest first.
std::vector<std::string> list_checkpoints_newest_first(const std::string& dir);

// Loads /model into params; with optim non-null also /optim (resume), else model only (init_from:
// buffers absent from the file stay zero). Shapes are checked against the logical shapes; a
// sharded parameter reads only its rows. Throws naming the file and the first problem.
CheckpointMeta load_checkpoint(const std::string& path, ParamStore& params, AdamW* optim);

}  // namespace moe
