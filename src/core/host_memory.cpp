// Host allocator tuning (glibc mallopt).
#include "core/host_memory.h"

#include <malloc.h>

namespace moe {

void tune_host_allocator() {
#ifdef M_MMAP_THRESHOLD
  mallopt(M_MMAP_THRESHOLD, 256 << 20);  // blocks under 256 MiB come from the heap, whose pages are reused
  mallopt(M_TRIM_THRESHOLD, 1 << 30);    // keep up to 1 GiB of freed heap instead of returning it
  mallopt(M_TOP_PAD, 64 << 20);
#endif
}

}  // namespace moe
