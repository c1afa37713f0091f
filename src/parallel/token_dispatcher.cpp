// Token dispatcher over the expert-parallel group.
#include "parallel/token_dispatcher.h"

#include <cstring>

#include "core/error.h"
#include "core/profiler.h"

namespace moe {

TokenDispatcher::TokenDispatcher(Communicator* ep, int64_t num_experts, int64_t row_width)
    : ep_(ep), P_(ep->size()), E_(num_experts), El_(num_experts / ep->size()), D_(row_width) {
  MOE_CHECK(E_ % P_ == 0, "num_experts " << E_ << " not divisible by the expert-parallel size " << P_);
  send_cnt_.resize(P_ * El_);
  recv_cnt_.resize(P_ * El_);
  send_elems_.resize(P_);
  recv_elems_.resize(P_);
  local_offsets_.assign(El_ + 1, 0);
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
    send_elems_[p] = s * D_;
    recv_elems_[p] = r * D_;
  }
  local_offsets_[0] = 0;
  for (int64_t e = 0; e < El_; ++e) {
    int64_t n = 0;
    for (int64_t p = 0; p < P_; ++p) n += recv_cnt_[p * El_ + e];
    local_offsets_[e + 1] = local_offsets_[e] + n;
  }
  staging_.resize(size_t(local_rows() * D_));
}

void TokenDispatcher::permute(const float* in, float* out, bool to_expert_major) {
  // Row offset of block (p, e) in source-major order, and in expert-major order.
  int64_t src = 0;
  for (int64_t p = 0; p < P_; ++p) {
    for (int64_t e = 0; e < El_; ++e) {
      int64_t dst = local_offsets_[e];
      for (int64_t q = 0; q < p; ++q) dst += recv_cnt_[q * El_ + e];
      int64_t rows = recv_cnt_[p * El_ + e];
      const float* from = (to_expert_major ? in + src * D_ : in + dst * D_);
      float* to = (to_expert_major ? out + dst * D_ : out + src * D_);
      if (rows > 0) std::memcpy(to, from, sizeof(float) * rows * D_);
      src += rows;
    }
  }
}

void TokenDispatcher::dispatch(const float* in, float* out) {
  {
    ScopedPhase phase("dispatch");
    ep_->all_to_all_v(in, send_elems_.data(), staging_.data(), recv_elems_.data());
  }
  permute(staging_.data(), out, true);
}

void TokenDispatcher::combine(const float* in, float* out) {
  permute(in, staging_.data(), false);
  ScopedPhase phase("combine");
  ep_->all_to_all_v(staging_.data(), recv_elems_.data(), out, send_elems_.data());
}

}  // namespace moe
