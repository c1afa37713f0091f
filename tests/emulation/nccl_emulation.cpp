// The NCCL calls moe-train makes, over MPI, for the CUDA emulation (docs/testing.md): with the
// emulated runtime's devices (MOE_EMULATED_DEVICES per node), the NCCL communicator
// (src/parallel/gpu/nccl_communicator.cpp) runs unchanged in CI, across real processes.
//
// Each call checks its buffers (they must lie in emulated device memory, as NCCL requires) and
// queues its MPI twin on its stream, which the emulated runtime defers until something waits for
// it: an NCCL result read without waiting shows up as stale data, as a send buffer overwritten
// before the send completes does. Sends and receives between ncclGroupStart and ncclGroupEnd run
// together, posted non-blocking and completed at once, as NCCL fuses a group. Every rank runs its
// deferred operations at the same points of the same program, so their MPI calls match.
//
// Communicators: ncclCommInitRank makes its group with MPI_Comm_split over MPI_COMM_WORLD, keyed
// by the unique id (its creator's world rank and a counter), so every rank of the job must make
// its NCCL communicators at the same moments, which moe-train does (the device communicators of
// dp, ep and expert dp are made collectively by all ranks). ncclCommSplit is MPI_Comm_split.
#include <mpi.h>
#include <nccl.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <vector>

#include "emulation/emulated_memory.h"

struct ncclComm {
  MPI_Comm mpi = MPI_COMM_NULL;
  int rank = 0, size = 0;
};

namespace moe::emu {
namespace {

struct IdContent {
  char magic[8];
  int creator_world_rank;
  int serial;
};

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

MPI_Datatype mpi_type(ncclDataType_t t) {
  switch (t) {
    case ncclFloat32:
      return MPI_FLOAT;
    case ncclFloat64:
      return MPI_DOUBLE;
    case ncclInt64:
      return MPI_INT64_T;
    case ncclUint8:
      return MPI_UINT8_T;
    case ncclInt32:
      return MPI_INT32_T;
    default:
      throw std::runtime_error("data type not emulated");
  }
}

size_t type_bytes(ncclDataType_t t) {
  int bytes = 0;
  MPI_Type_size(mpi_type(t), &bytes);
  return size_t(bytes);
}

MPI_Op mpi_op(ncclRedOp_t op) {
  switch (op) {
    case ncclSum:
      return MPI_SUM;
    case ncclMax:
      return MPI_MAX;
    case ncclMin:
      return MPI_MIN;
    default:
      throw std::runtime_error("reduction not emulated");
  }
}

ncclComm* make_comm(MPI_Comm mpi) {
  auto* c = new ncclComm;
  c->mpi = mpi;
  MPI_Comm_rank(mpi, &c->rank);
  MPI_Comm_size(mpi, &c->size);
  return c;
}

thread_local int group_depth = 0;

template <class F>
ncclResult_t guarded(const char* call, F&& f) {
  try {
    f();
    return ncclSuccess;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "emulated %s: %s\n", call, e.what());
    return ncclInvalidArgument;
  }
}

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) throw std::runtime_error(std::string(what) + " failed in MPI");
}

}  // namespace
}  // namespace moe::emu

using moe::emu::guarded;
using moe::emu::require_device;
using moe::emu::type_bytes;

const char* ncclGetErrorString(ncclResult_t result) {
  return result == ncclSuccess ? "no error" : "emulated NCCL error (details on stderr)";
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static int serial = 0;
  std::memset(id, 0, sizeof *id);
  moe::emu::IdContent c{{'m', 'o', 'e', '-', 'e', 'm', 'u', '\0'}, moe::emu::world_rank(), serial++};
  std::memcpy(id->internal, &c, sizeof c);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  return guarded("ncclCommInitRank", [&] {
    moe::emu::IdContent c;
    std::memcpy(&c, id.internal, sizeof c);
    if (std::strncmp(c.magic, "moe-emu", 8) != 0) throw std::runtime_error("not an id of ncclGetUniqueId");
    MPI_Comm mpi = MPI_COMM_NULL;  // the color: the id's creator and serial, unique in the job
    moe::emu::check_mpi(MPI_Comm_split(MPI_COMM_WORLD, c.creator_world_rank * 4096 + c.serial % 4096, rank, &mpi),
                        "MPI_Comm_split");
    *comm = moe::emu::make_comm(mpi);
    if ((*comm)->size != nranks || (*comm)->rank != rank)
      throw std::runtime_error("the ranks that share the id do not match nranks / rank");
  });
}

ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm, ncclConfig_t*) {
  return guarded("ncclCommSplit", [&] {
    MPI_Comm mpi = MPI_COMM_NULL;
    moe::emu::check_mpi(MPI_Comm_split(comm->mpi, color == NCCL_SPLIT_NOCOLOR ? MPI_UNDEFINED : color, key, &mpi),
                        "MPI_Comm_split");
    *newcomm = mpi == MPI_COMM_NULL ? nullptr : moe::emu::make_comm(mpi);
  });
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (comm) {
    MPI_Comm_free(&comm->mpi);
    delete comm;
  }
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) { return ncclCommDestroy(comm); }
ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  *count = comm->size;
  return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  *rank = comm->rank;
  return ncclSuccess;
}

// The collectives check their buffers at the call and run on the stream (deferred on the NCCL
// communicator's own stream until something waits for it, emulated_memory.h).
ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  return guarded("ncclAllReduce", [&] {
    const size_t bytes = count * type_bytes(type);
    require_device(send, bytes, "ncclAllReduce send buffer");
    require_device(recv, bytes, "ncclAllReduce receive buffer");
    const MPI_Datatype t = moe::emu::mpi_type(type);
    const MPI_Op o = moe::emu::mpi_op(op);
    moe::emu::enqueue(stream, [=] {
      moe::emu::check_mpi(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, int(count), t, o, comm->mpi),
                          "MPI_Allreduce");
    });
  });
}

ncclResult_t ncclBroadcast(const void* send, void* recv, size_t count, ncclDataType_t type, int root, ncclComm_t comm,
                           cudaStream_t stream) {
  return guarded("ncclBroadcast", [&] {
    const size_t bytes = count * type_bytes(type);
    require_device(recv, bytes, "ncclBroadcast receive buffer");
    if (comm->rank == root) require_device(send, bytes, "ncclBroadcast send buffer");
    const MPI_Datatype t = moe::emu::mpi_type(type);
    moe::emu::enqueue(stream, [=] {
      if (comm->rank == root && send != recv) std::memmove(recv, send, bytes);
      moe::emu::check_mpi(MPI_Bcast(recv, int(count), t, root, comm->mpi), "MPI_Bcast");
    });
  });
}

ncclResult_t ncclAllGather(const void* send, void* recv, size_t count, ncclDataType_t type, ncclComm_t comm,
                           cudaStream_t stream) {
  return guarded("ncclAllGather", [&] {
    const size_t bytes = count * type_bytes(type);
    require_device(send, bytes, "ncclAllGather send buffer");
    require_device(recv, bytes * size_t(comm->size), "ncclAllGather receive buffer");
    const bool in_place = send == static_cast<const char*>(recv) + bytes * size_t(comm->rank);
    const MPI_Datatype t = moe::emu::mpi_type(type);
    moe::emu::enqueue(stream, [=] {
      moe::emu::check_mpi(
          MPI_Allgather(in_place ? MPI_IN_PLACE : send, int(count), t, recv, int(count), t, comm->mpi),
          "MPI_Allgather");
    });
  });
}

ncclResult_t ncclReduceScatter(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream) {
  return guarded("ncclReduceScatter", [&] {
    const size_t bytes = count * type_bytes(type);
    require_device(send, bytes * size_t(comm->size), "ncclReduceScatter send buffer");
    require_device(recv, bytes, "ncclReduceScatter receive buffer");
    const MPI_Datatype t = moe::emu::mpi_type(type);
    const MPI_Op o = moe::emu::mpi_op(op);
    moe::emu::enqueue(stream, [=] {
      moe::emu::check_mpi(MPI_Reduce_scatter_block(send, recv, int(count), t, o, comm->mpi),
                          "MPI_Reduce_scatter_block");
    });
  });
}

// Sends and receives: a group's run together, as one deferred operation on the stream of its last
// call, posted non-blocking and completed together (NCCL fuses a group); outside a group, alone.
namespace moe::emu {
namespace {
struct P2p {
  bool send;
  void* buffer;
  int count;
  MPI_Datatype type;
  int peer;
  MPI_Comm comm;
};
thread_local std::vector<P2p> group_ops;
thread_local cudaStream_t group_stream = nullptr;

void run_p2p(const std::vector<P2p>& ops) {
  std::vector<MPI_Request> requests(ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    const P2p& o = ops[i];
    check_mpi(o.send ? MPI_Isend(o.buffer, o.count, o.type, o.peer, 0, o.comm, &requests[i])
                     : MPI_Irecv(o.buffer, o.count, o.type, o.peer, 0, o.comm, &requests[i]),
              o.send ? "MPI_Isend" : "MPI_Irecv");
  }
  check_mpi(MPI_Waitall(int(requests.size()), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall");
}

void add_p2p(const P2p& op, cudaStream_t stream) {
  if (group_depth == 0) {
    enqueue(stream, [op] { run_p2p({op}); });
    return;
  }
  group_ops.push_back(op);
  group_stream = stream;
}
}  // namespace
}  // namespace moe::emu

ncclResult_t ncclGroupStart() {
  ++moe::emu::group_depth;
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd() {
  return guarded("ncclGroupEnd", [&] {
    if (moe::emu::group_depth == 0) throw std::runtime_error("ncclGroupEnd without ncclGroupStart");
    if (--moe::emu::group_depth > 0) return;
    std::vector<moe::emu::P2p> ops;
    ops.swap(moe::emu::group_ops);
    if (!ops.empty()) moe::emu::enqueue(moe::emu::group_stream, [ops] { moe::emu::run_p2p(ops); });
  });
}

ncclResult_t ncclSend(const void* send, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  return guarded("ncclSend", [&] {
    require_device(send, count * type_bytes(type), "ncclSend buffer");
    moe::emu::add_p2p({true, const_cast<void*>(send), int(count), moe::emu::mpi_type(type), peer, comm->mpi}, stream);
  });
}

ncclResult_t ncclRecv(void* recv, size_t count, ncclDataType_t type, int peer, ncclComm_t comm, cudaStream_t stream) {
  return guarded("ncclRecv", [&] {
    require_device(recv, count * type_bytes(type), "ncclRecv buffer");
    moe::emu::add_p2p({false, recv, int(count), moe::emu::mpi_type(type), peer, comm->mpi}, stream);
  });
}
