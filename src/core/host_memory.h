// Process-wide tuning of the host allocator. Large buffers that come and go (HDF5's per-chunk
// filter buffers during a save, checkpoint snapshots, first-touch work tensors) are otherwise
// mmap'd fresh each time, and page faults on fresh pages cost more than the copy itself (measured:
// checkpoint writes 120 MB/s -> 350 MB/s on the development VM). Called first thing by the programs.
#pragma once

namespace moe {

void tune_host_allocator();

}  // namespace moe
