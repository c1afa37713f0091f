// CPU-only builds: no device communicators.
#include "core/error.h"
#include "parallel/gpu/device_communicators.h"

namespace moe {

bool nccl_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(Communicator&) {
  MOE_THROW("this build has no CUDA (nvcc was not found or -DMOE_CUDA=OFF): no NCCL communicator");
}

std::unique_ptr<Communicator> make_host_staged_communicator(Communicator&) {
  MOE_THROW("this build has no CUDA (nvcc was not found or -DMOE_CUDA=OFF): no device communicator");
}

std::unique_ptr<Communicator> make_device_communicator(Communicator&, std::string*) {
  MOE_THROW("this build has no CUDA (nvcc was not found or -DMOE_CUDA=OFF): no device communicator");
}

}  // namespace moe
