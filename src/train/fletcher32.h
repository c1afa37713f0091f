// HDF5's Fletcher-32 checksum (the H5Z_FILTER_FLETCHER32 filter), computed by us so checkpoint
// chunks can be written and verified directly (H5Dwrite_chunk / H5Dread_chunk) without HDF5's
// byte-at-a-time filter pipeline. Bit-for-bit the value HDF5 computes: the data is read as
// big-endian 16-bit words, both sums are folded to 16 bits every 360 words, and the filter stores
// the 32-bit result little-endian after the chunk's bytes. h5py and h5dump verify it as usual.
#pragma once
#include <cstddef>
#include <cstdint>

namespace moe {

uint32_t fletcher32(const void* data, size_t bytes);

// Appends the checksum to `chunk` (which must have room for 4 more bytes after `bytes`), in the
// byte order the HDF5 filter uses, and returns the stored size (bytes + 4).
size_t append_fletcher32(unsigned char* chunk, size_t bytes);

// True when the last 4 of `stored_bytes` are the checksum of the bytes before them.
bool fletcher32_matches(const unsigned char* chunk, size_t stored_bytes);

}  // namespace moe
