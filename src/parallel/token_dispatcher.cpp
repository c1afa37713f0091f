// Token dispatcher over the expert-parallel group.
#include "parallel/token_dispatcher.h"

#include "core/error.h"
#include "core/profiler.h"

namespace moe {

TokenDispatcher::TokenDispatcher(Communicator* ep, int64_t num_experts, int64_t row_width, Communicator* rows)
    : ep_(ep), rows_(rows ? rows : ep), P_(ep->size()), E_(num_experts), El_(num_experts / ep->size()), D_(row_width) {
  MOE_CHECK(E_ % P_ == 0, "num_experts " << E_ << " not divisible by the expert-parallel size " << P_);
  MOE_CHECK(rows_->size() == P_ && rows_->rank() == ep->rank(),
            "token dispatcher: the rows' communicator does not span the expert-parallel group");
  send_cnt_.resize(P_ * El_);
  recv_cnt_.resize(P_ * El_);
  send_rows_.resize(P_);
  recv_rows_.resize(P_);
  send_elems_.resize(P_);
  recv_elems_.resize(P_);
  local_offsets_.assign(P_ * El_ + 1, 0);
}

void TokenDispatcher::plan(const int64_t* offsets) {
  for (int64_t g = 0; g < E_; ++g) send_cnt_[g] = offsets[g + 1] - offsets[g];
  {
    ScopedPhase phase("dispatch_counts");
    ep_->all_to_all(send_cnt_.data(), recv_cnt_.data(), El_);
  }
  for (int64_t p = 0; p < P_; ++p) {
    int64_t s = 0, r = 0;
    for (int64_t e = 0; e < El_; ++e) {
      s += send_cnt_[p * El_ + e];
      r += recv_cnt_[p * El_ + e];
    }
    send_rows_[p] = s;
    recv_rows_[p] = r;
  }
  local_offsets_[0] = 0;
  for (int64_t g = 0; g < P_ * El_; ++g) local_offsets_[g + 1] = local_offsets_[g] + recv_cnt_[g];
}

void TokenDispatcher::set_width(int64_t width) {
  for (int64_t p = 0; p < P_; ++p) {
    send_elems_[p] = send_rows_[p] * width;
    recv_elems_[p] = recv_rows_[p] * width;
  }
}

void TokenDispatcher::dispatch(const void* in, void* out, int64_t width) {
  ScopedPhase phase("dispatch");
  set_width(width);
  rows_->all_to_all_v(static_cast<const float*>(in), send_elems_.data(), static_cast<float*>(out), recv_elems_.data());
}

void TokenDispatcher::combine(const void* in, void* out, int64_t width) {
  ScopedPhase phase("combine");
  set_width(width);
  rows_->all_to_all_v(static_cast<const float*>(in), recv_elems_.data(), static_cast<float*>(out), send_elems_.data());
}

std::unique_ptr<PendingOp> TokenDispatcher::dispatch_async(const void* in, void* out, int64_t width) {
  ScopedPhase phase("dispatch");
  set_width(width);
  return rows_->all_to_all_v_async(static_cast<const float*>(in), send_elems_.data(), static_cast<float*>(out),
                                   recv_elems_.data());
}

std::unique_ptr<PendingOp> TokenDispatcher::combine_async(const void* in, void* out, int64_t width) {
  ScopedPhase phase("combine");
  set_width(width);
  return rows_->all_to_all_v_async(static_cast<const float*>(in), recv_elems_.data(), static_cast<float*>(out),
                                   send_elems_.data());
}

}  // namespace moe
