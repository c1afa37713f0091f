// make_device_communicator (device_communicators.h): the GPU of this rank, then NCCL or host staging.
#include <cuda_runtime.h>

#include "core/error.h"
#include "parallel/gpu/device_communicators.h"

namespace moe {

std::unique_ptr<Communicator> make_device_communicator(Communicator& group, std::string* kind) {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  MOE_CHECK(e == cudaSuccess && devices > 0, "data parallelism on GPUs: rank " << group.rank()
                                                 << " sees no CUDA device (" << cudaGetErrorString(e) << ")");
  const int local = node_local_rank(group.rank());
  float ranks_here = float(local + 1);  // over the group: the ranks on the busiest node
  group.all_reduce_max(&ranks_here, 1);
  const cudaError_t s = cudaSetDevice(local % devices);
  MOE_CHECK(s == cudaSuccess, "data parallelism on GPUs: selecting GPU " << local % devices << " failed: "
                                                                          << cudaGetErrorString(s));
  const bool nccl = nccl_built() && int(ranks_here) <= devices;
  if (kind) *kind = nccl ? "nccl" : "host-staged";
  return nccl ? make_nccl_communicator(group) : make_host_staged_communicator(group);
}

}  // namespace moe
