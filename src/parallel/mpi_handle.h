// Access to the MPI communicator behind a Communicator, for libraries that take an MPI_Comm
// (parallel HDF5). Only this header and mpi_communicator.cpp name MPI types.
#pragma once
#include <mpi.h>

#include "parallel/communicator.h"

namespace moe {

// True and *out set when c is an MPI communicator; false for the one-rank communicator.
bool mpi_comm_of(Communicator& c, MPI_Comm* out);
// Whether MPI was initialised with MPI_THREAD_MULTIPLE (false when MPI is not initialised).
bool mpi_thread_multiple();

}  // namespace moe
