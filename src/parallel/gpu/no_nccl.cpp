// Builds with CUDA but without NCCL: the NCCL communicator is absent; host staging remains.
#include "core/error.h"
#include "parallel/gpu/device_communicators.h"

namespace moe {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&) {
  MOE_THROW("this build has no NCCL (CMake did not find nccl.h / libnccl): use the host-staged communicator");
}

}  // namespace moe
