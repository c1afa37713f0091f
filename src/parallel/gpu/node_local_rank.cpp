// node_local_rank (device_communicators.h): the launcher's node-local rank. No CUDA needed.
#include <cstdlib>

#include "parallel/gpu/device_communicators.h"

namespace moe {

int node_local_rank(int fallback) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return fallback;
}

}  // namespace moe
