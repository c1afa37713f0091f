// Dispatch / Combine stages of the MoE layer under expert parallelism: moves expert-ordered token
// rows to the ranks of the expert-parallel group that hold each expert (all-to-all-v, counts
// exchanged first) and back. Rank p of the group holds experts [p * E_local, (p + 1) * E_local).
// Collective over the ep group: every rank calls plan/dispatch/combine the same number of times,
// whether or not it has rows for anybody.
#pragma once
#include <cstdint>
#include <vector>

#include "parallel/communicator.h"

namespace moe {

class TokenDispatcher {
 public:
  // rows: the communicator the rows travel over when it is not `ep` itself (the GPU model: a device
  // communicator over the same ranks; the counts stay on the host, over ep).
  TokenDispatcher(Communicator* ep, int64_t num_experts, int64_t row_width, Communicator* rows = nullptr);
  // offsets: [E + 1] rows per (global) expert of this rank's expert-ordered rows. Exchanges counts.
  void plan(const int64_t* offsets);
  int64_t local_rows() const { return local_offsets_.back(); }
  // Received rows come in P x E_local groups, source-major: group s * E_local + e holds the rows
  // that rank s sent to local expert e (so group g is served by local expert g % E_local).
  int64_t num_local_groups() const { return P_ * El_; }
  const int64_t* local_offsets() const { return local_offsets_.data(); }  // [P * E_local + 1]

  // in: this rank's rows [offsets[E], D] -> out: [local_rows, D] in the groups above. No copy
  // besides the exchange itself: the expert GEMMs read the groups where they land.
  void dispatch(const float* in, float* out) { dispatch(in, out, D_); }
  // The reverse: in [local_rows, D] in the groups above -> out: this rank's rows, in order.
  // (The backward of dispatch is combine and vice versa.)
  void combine(const float* in, float* out) { combine(in, out, D_); }
  // The same for rows of `width` floats' worth of bytes instead of row_width (the GPU model sends
  // bf16 rows of D values as D / 2 floats: the exchange moves bytes, it never computes on them).
  void dispatch(const void* in, void* out, int64_t width);
  void combine(const void* in, void* out, int64_t width);
  // Started without waiting (Communicator::all_to_all_v_async): in and out must stay untouched
  // until the op's wait() returns. Where the rows' communicator cannot overlap, they run at once.
  std::unique_ptr<PendingOp> dispatch_async(const void* in, void* out, int64_t width);
  std::unique_ptr<PendingOp> combine_async(const void* in, void* out, int64_t width);

 private:
  void set_width(int64_t width);  // send_elems_ / recv_elems_ for rows of `width` floats

  Communicator* ep_;
  Communicator* rows_;
  int64_t P_, E_, El_, D_;
  std::vector<int64_t> send_cnt_, recv_cnt_;  // [P * El] rows
  std::vector<int64_t> send_rows_, recv_rows_;  // [P] rows per peer
  std::vector<int64_t> send_elems_, recv_elems_;  // [P] floats per peer, for the width of the last call
  std::vector<int64_t> local_offsets_;            // [P * El + 1]
};

}  // namespace moe
