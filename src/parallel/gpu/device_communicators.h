// Communicators whose buffers are CUDA device memory, behind the same Communicator interface
// (DESIGN: one small virtual communicator). Every pointer passed to their collectives, counts of
// all_to_all_v excepted (host arrays), is device memory; calls block until the result is in place,
// except all_reduce_sum_async, which is ordered after the compute already queued on the default
// stream and completes in wait().
//
// - NCCL (nccl_communicator.cpp): one GPU per rank; the NCCL unique id is made by rank 0 and
//   broadcast over the MPI group; collectives run on a dedicated stream ordered after compute with
//   events, so gradient reduction overlaps the next kernels.
// - Host-staged (host_staged_communicator.cpp): copies device -> host, runs the MPI collective,
//   copies back. For machines without NCCL, or several ranks sharing one GPU (NCCL refuses that).
//
// Which of them a build has is chosen by CMake: without CUDA or without NCCL, no_cuda.cpp /
// no_nccl.cpp define the missing factories to throw a moe::Error that says so.
#pragma once
#include <memory>
#include <string>

#include "parallel/communicator.h"

namespace moe {

// Whether this build has the NCCL communicator (CUDA and NCCL found by CMake).
bool nccl_built();
// Collective over `group` (an MPI communicator, used for the id broadcast and kept for abort).
// Selects the GPU local_rank % device_count; refuses ranks that would share a GPU.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& group);
// Wraps `group` (borrowed; must outlive the result). Needs a build with CUDA.
std::unique_ptr<Communicator> make_host_staged_communicator(Communicator& group);

// The rank's index among the ranks on its node, from the launcher's environment (Open MPI's
// OMPI_COMM_WORLD_LOCAL_RANK, Slurm's SLURM_LOCALID, MPICH's MPI_LOCALRANKID), else `fallback`.
int node_local_rank(int fallback);

// The device communicator of data parallelism over `group` (collective: every rank calls it):
// selects GPU node_local_rank % device_count, then NCCL where the build has it and no node runs more
// ranks than it has GPUs, host-staged otherwise (ranks sharing a GPU, or no NCCL). *kind names the
// choice ("nccl" or "host-staged") for the log. Needs a build with CUDA and a GPU.
std::unique_ptr<Communicator> make_device_communicator(Communicator& group, std::string* kind);

}  // namespace moe
