// The emulated CUDA runtime (cudart_emulation.cpp) as the other emulated libraries use it. Device and
// pinned host memory are ordinary host memory, remembered so that copies and cuBLAS / NCCL calls can
// be checked the way a GPU would fault on them: a "device" address must lie inside one live device
// allocation, for all the bytes used. Streams other than the default defer their work.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>

namespace moe::emu {

enum class Space { kDevice, kPinnedHost, kUnknown };  // kUnknown: ordinary host memory

// Where [p, p + bytes) lies; kUnknown also when it straddles or overruns an allocation.
Space space_of(const void* p, size_t bytes);

// Throws std::runtime_error naming `what` unless [p, p + bytes) lies in device memory.
void require_device(const void* p, size_t bytes, const char* what);

// Work on `stream`: at once on the default stream, deferred on the streams cudaStreamCreate* made
// (cudart_emulation.cpp: they run their queue when something waits for them). A deferred op that
// throws fails the call that runs it (cudaErrorLaunchFailure, its message in cudaGetErrorString).
void enqueue(cudaStream_t stream, std::function<void()> op);

}  // namespace moe::emu
