// moe-train CONFIG.yaml [--set key=value]...   (alone, or under mpirun / srun)
#include <mpi.h>

#include <cstdio>

#include "core/host_memory.h"

#include "core/config.h"
#include "core/error.h"
#include "core/logging.h"
#include "parallel/communicator.h"
#include "train/cli_args.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  // THREAD_MULTIPLE: the background checkpoint writer talks MPI (on its own communicator) while
  // training does; with a lower level, saves fall back to synchronous.
  moe::tune_host_allocator();
  int provided = MPI_THREAD_SINGLE;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  moe::init_logging(rank);
  int rc = 0;
  try {
    moe::CliArgs args = moe::parse_cli_args(argc, argv, "moe-train");
    if (args.help) {
      if (rank == 0)
        std::printf("usage: moe-train CONFIG.yaml [--set key=value]...\n"
                    "Trains the model the YAML config describes (keys: docs/config.md).\n");
    } else {
      moe::Config cfg = moe::load_config(args.config_path, args.overrides);
      cfg.finalize(size);
      auto world = size > 1 ? moe::make_mpi_world_communicator() : moe::make_local_communicator();
      moe::Trainer trainer(cfg, *world);
#ifdef MOE_WITH_CUDA
      trainer.use_gpu(&moe::make_gpu_training, &moe::gpu_training_available);  // train.precision bf16 (docs/cuda.md)
#endif
      rc = trainer.run();
    }
  } catch (const moe::Error& e) {
    moe::log_error(e.message() + "  (" + e.location() + ")");
    rc = 1;
  } catch (const std::exception& e) {
    moe::log_error(std::string("internal error: ") + e.what());
    rc = 2;
  }
  moe::shutdown_logging();
  if (rc != 0 && size > 1) MPI_Abort(MPI_COMM_WORLD, rc);
  MPI_Finalize();
  return rc;
}
