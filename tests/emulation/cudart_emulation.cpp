// The part of the CUDA runtime API that moe-train calls, implemented on the CPU for the CUDA
// emulation (docs/testing.md): one emulated device whose memory is host memory, every operation
// synchronous (streams, events and memory pools exist only as names). Definitions match the
// declarations of the toolkit's cuda_runtime_api.h, so the project's CUDA sources link against
// this instead of libcudart unchanged.
//
// What a GPU would reject is rejected here too, with cudaErrorInvalidValue and a message naming
// the call (cudaGetErrorString): copies whose device side is not inside one live device
// allocation, host sides that are device memory, freeing what was not allocated. New device memory
// is filled with 0xFF bytes (NaN as fp32 and bf16, -1 as integers), so results that depend on
// memory nobody wrote show up as NaN instead of passing by luck.
#include <cuda_runtime_api.h>

#include <chrono>
#include <deque>
#include <functional>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>

#include "emulation/cuda_emulation.h"
#include "emulation/emulated_memory.h"

struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  int64_t stream = 0;  // the deferring stream (its id; 0: none), and how much of its queue it follows
  int64_t position = 0;
};

// Streams made by cudaStreamCreate* defer their work (emulated_memory.h): a queue of operations run
// in order when something waits for them.
struct CUstream_st {
  int64_t id;  // events name their stream by id: one destroyed since is simply done
  std::deque<std::function<void()>> queue;
  int64_t queued = 0, done = 0;
};

namespace moe::emu {
namespace {

constexpr size_t kDeviceBytes = size_t(16) << 30;  // what the emulated device reports as its memory

struct Allocation {
  size_t bytes;
  Space space;
};

std::mutex mutex;
std::map<const char*, Allocation> allocations;  // by start address
size_t device_in_use = 0;
thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_message;

cudaError_t failed(cudaError_t e, const std::string& message) {
  last_error = e;
  last_message = message;
  return e;
}

// The allocation holding [p, p + bytes), or allocations.end(). Caller holds the mutex.
std::map<const char*, Allocation>::const_iterator find(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  auto it = allocations.upper_bound(c);
  if (it == allocations.begin()) return allocations.end();
  --it;
  if (c + bytes > it->first + it->second.bytes) return allocations.end();
  return it;
}

cudaError_t allocate(void** p, size_t bytes, Space space, const char* call) {
  std::lock_guard<std::mutex> lock(mutex);
  if (space == Space::kDevice && bytes > kDeviceBytes - device_in_use)
    return failed(cudaErrorMemoryAllocation, std::string(call) + ": out of emulated device memory");
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* mem = std::aligned_alloc(256, rounded);
  if (!mem) return failed(cudaErrorMemoryAllocation, std::string(call) + ": host allocation failed");
  std::memset(mem, 0xFF, rounded);
  allocations[static_cast<const char*>(mem)] = Allocation{bytes, space};
  if (space == Space::kDevice) device_in_use += bytes;
  *p = mem;
  return cudaSuccess;
}

cudaError_t release(void* p, Space space, const char* call) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = allocations.find(static_cast<const char*>(p));
  if (it == allocations.end() || it->second.space != space)
    return failed(cudaErrorInvalidValue, std::string(call) + ": not the start of a live allocation of this kind");
  if (space == Space::kDevice) device_in_use -= it->second.bytes;
  allocations.erase(it);
  std::free(p);
  return cudaSuccess;
}

// Whether a copy's two sides are where `kind` says they are.
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* call) {
  if (bytes == 0 || kind == cudaMemcpyDefault) return cudaSuccess;
  const bool dst_device = space_of(dst, bytes) == Space::kDevice, src_device = space_of(src, bytes) == Space::kDevice;
  const bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (dst_device != want_dst || src_device != want_src) {
    std::ostringstream os;
    os << call << " of " << bytes << " bytes: destination " << (dst_device ? "is" : "is not")
       << " device memory, source " << (src_device ? "is" : "is not") << " device memory, against the copy kind "
       << int(kind) << " (or a device side runs past its allocation)";
    return failed(cudaErrorInvalidValue, os.str());
  }
  return cudaSuccess;
}

}  // namespace

Space space_of(const void* p, size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex);
  auto it = find(p, bytes);
  return it == allocations.end() ? Space::kUnknown : it->second.space;
}

void require_device(const void* p, size_t bytes, const char* what) {
  if (space_of(p, bytes) != Space::kDevice) {
    std::ostringstream os;
    os << what << ": [" << p << ", +" << bytes << ") is not inside one device allocation";
    throw std::runtime_error(os.str());
  }
}

}  // namespace moe::emu

using moe::emu::Space;

// ---- devices: MOE_EMULATED_DEVICES of them (default 1), all backed by the same host memory ----
namespace moe::emu {
namespace {
int device_count() {
  static const int n = [] {
    const char* s = std::getenv("MOE_EMULATED_DEVICES");
    const int v = s ? std::atoi(s) : 1;
    return v > 0 ? v : 1;
  }();
  return n;
}
int current_device = 0;
}  // namespace
}  // namespace moe::emu

cudaError_t cudaGetDeviceCount(int* count) {
  *count = moe::emu::device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = moe::emu::current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= moe::emu::device_count())
    return moe::emu::failed(cudaErrorInvalidDevice, "cudaSetDevice: no such emulated device (MOE_EMULATED_DEVICES)");
  moe::emu::current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= moe::emu::device_count())
    return moe::emu::failed(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no such emulated device");
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "CUDA emulation on the CPU", sizeof prop->name - 1);
  prop->totalGlobalMem = moe::emu::kDeviceBytes;
  prop->major = 9, prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->sharedMemPerBlockOptin = moe::emu::kMaxDynamicSmem;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize && size_t(value) > moe::emu::kMaxDynamicSmem)
    return moe::emu::failed(cudaErrorInvalidValue, "cudaFuncSetAttribute: more dynamic shared memory than a block has");
  return cudaSuccess;
}

// ---- errors ----
cudaError_t cudaGetLastError() {
  const cudaError_t e = moe::emu::last_error;
  moe::emu::last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return moe::emu::last_error; }
const char* cudaGetErrorString(cudaError_t error) {
  if (error == cudaSuccess) return "no error";
  if (!moe::emu::last_message.empty()) return moe::emu::last_message.c_str();
  return "emulated CUDA error";
}

// ---- memory ----
cudaError_t cudaMalloc(void** p, size_t bytes) { return moe::emu::allocate(p, bytes, Space::kDevice, "cudaMalloc"); }
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) {
  return moe::emu::allocate(p, bytes, Space::kDevice, "cudaMallocAsync");
}
cudaError_t cudaFree(void* p) { return moe::emu::release(p, Space::kDevice, "cudaFree"); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return moe::emu::release(p, Space::kDevice, "cudaFreeAsync"); }
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  return moe::emu::allocate(p, bytes, Space::kPinnedHost, "cudaMallocHost");
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) {
  return moe::emu::allocate(p, bytes, Space::kPinnedHost, "cudaHostAlloc");
}
cudaError_t cudaFreeHost(void* p) { return moe::emu::release(p, Space::kPinnedHost, "cudaFreeHost"); }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total) {
  std::lock_guard<std::mutex> lock(moe::emu::mutex);
  *total = moe::emu::kDeviceBytes;
  *free_bytes = moe::emu::kDeviceBytes - moe::emu::device_in_use;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int) {
  *pool = nullptr;
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = moe::emu::check_copy(dst, src, bytes, kind, "cudaMemcpy")) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (cudaError_t e = moe::emu::check_copy(dst, src, bytes, kind, "cudaMemcpyAsync")) return e;
  if (bytes) moe::emu::enqueue(stream, [=] { std::memmove(dst, src, bytes); });
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (bytes && moe::emu::space_of(p, bytes) != Space::kDevice)
    return moe::emu::failed(cudaErrorInvalidValue, "cudaMemset: not inside one device allocation");
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream) {
  if (bytes && moe::emu::space_of(p, bytes) != Space::kDevice)
    return moe::emu::failed(cudaErrorInvalidValue, "cudaMemsetAsync: not inside one device allocation");
  moe::emu::enqueue(stream, [=] { std::memset(p, value, bytes); });
  return cudaSuccess;
}

// ---- streams and events ----
// The default stream runs work at once. Other streams defer it until someone waits: their queue up to
// an event runs at cudaEventSynchronize / cudaEventQuery, or when a stream that waits for the event
// (cudaStreamWaitEvent) runs past the wait, and all of it at cudaStreamSynchronize /
// cudaDeviceSynchronize.
// So work another stream does is seen late rather than early: a result read, or a buffer reused,
// without waiting for it shows up (as stale data) in the tests.
namespace moe::emu {
namespace {
std::map<int64_t, cudaStream_t> deferring;  // live deferring streams by id
int64_t last_stream_id = 0;
cudaError_t deferred_error = cudaSuccess;  // the first failure of a deferred operation
std::string deferred_message;

// (the default stream's handles, nullptr and cudaStreamLegacy = 0x1, are never dereferenced)
bool defers(cudaStream_t s) {
  for (const auto& [id, live] : deferring)
    if (live == s) return true;
  return false;
}

cudaError_t run_until(cudaStream_t s, int64_t position) {
  while (s->done < position) {
    std::function<void()> op = std::move(s->queue.front());
    s->queue.pop_front();
    ++s->done;
    try {
      op();
    } catch (const std::exception& e) {
      if (deferred_error == cudaSuccess) deferred_error = cudaErrorLaunchFailure, deferred_message = e.what();
    }
  }
  if (deferred_error != cudaSuccess) return failed(deferred_error, "deferred stream operation: " + deferred_message);
  return cudaSuccess;
}
}  // namespace

void enqueue(cudaStream_t stream, std::function<void()> op) {
  if (!defers(stream)) return op();
  stream->queue.push_back(std::move(op));
  ++stream->queued;
}
}  // namespace moe::emu

cudaError_t cudaDeviceSynchronize() {
  for (auto& [id, s] : moe::emu::deferring)
    if (cudaError_t e = moe::emu::run_until(s, s->queued)) return e;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  return moe::emu::defers(s) ? moe::emu::run_until(s, s->queued) : cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) {
  *stream = new CUstream_st{++moe::emu::last_stream_id, {}, 0, 0};
  moe::emu::deferring[(*stream)->id] = *stream;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  const cudaError_t e = cudaStreamSynchronize(stream);
  moe::emu::deferring.erase(stream->id);
  delete stream;
  return e;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = new CUevent_st{std::chrono::steady_clock::now()};
  return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) { return cudaEventCreate(event); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  event->at = std::chrono::steady_clock::now();
  event->stream = moe::emu::defers(stream) ? stream->id : 0;
  event->position = event->stream ? stream->queued : 0;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  auto it = moe::emu::deferring.find(event->stream);  // a destroyed stream ran its queue when destroyed
  return it == moe::emu::deferring.end() ? cudaSuccess : moe::emu::run_until(it->second, event->position);
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
// A deferring stream waits in its queue (its later work runs after the event's, not sooner); the
// default stream, which runs everything at once, can only run the event's work now.
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int) {
  if (!event->stream) return cudaSuccess;
  if (!moe::emu::defers(stream)) return cudaEventSynchronize(event);
  const int64_t id = event->stream, position = event->position;
  moe::emu::enqueue(stream, [id, position] {
    auto it = moe::emu::deferring.find(id);
    if (it != moe::emu::deferring.end()) moe::emu::run_until(it->second, position);
  });
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
