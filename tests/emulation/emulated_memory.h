// Device and pinned host memory of the emulated CUDA runtime (cudart_emulation.cpp): ordinary host
// memory, remembered so that copies and cuBLAS calls can be checked the way a GPU would fault on
// them: a "device" address must lie inside one live device allocation, for all the bytes used.
#pragma once
#include <cstddef>

namespace moe::emu {

enum class Space { kDevice, kPinnedHost, kUnknown };  // kUnknown: ordinary host memory

// Where [p, p + bytes) lies; kUnknown also when it straddles or overruns an allocation.
Space space_of(const void* p, size_t bytes);

// Throws std::runtime_error naming `what` unless [p, p + bytes) lies in device memory.
void require_device(const void* p, size_t bytes, const char* what);

}  // namespace moe::emu
