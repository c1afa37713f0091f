// GpuTransformer's expert stage (MoeLayer's experts_fwd / experts_bwd on the GPU): the ordered
// token rows of the layer's slice (b.moe_in) gathered, the grouped SwiGLU experts (bf16 operands
// and activations in bf16 mode), the results unordered into b.moe_out; and the backward in reverse.
//
// Under expert parallelism the rows go to the ranks holding their experts and back (TokenDispatcher
// over a device communicator) in C chunks, pipelined: every chunk's exchange is started first, then
// chunk c's experts run as soon as its rows have arrived, while the later chunks' rows travel, and
// its results start back at once (the exchanges of a communicator that overlaps, NCCL, run on their
// own stream). Chunk c takes a C-th of each expert's rows (moe_chunk_offsets), so the rows are kept
// in chunk-major order: row_token and slot are renumbered once after the order stage.
#include <algorithm>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/moe_order.h"
#include "kernels/swiglu.h"
#include "model/gpu/gpu_block.h"
#include "model/gpu/gpu_transformer.h"

namespace moe::gpu {

namespace {

// A device pointer `rows` rows of `width` elements of T further on.
template <class T>
T* rows_on(T* base, int64_t rows, int64_t width) {
  return base + rows * width;
}

}  // namespace

// The experts' forward on local rows [first, first + R) of the block's buffers (groups G relative
// to `first`): g, u, h and the output rows y (fp32).
void GpuTransformer::expert_rows_forward(Block& b, const Groups& G, int64_t first, int64_t R, float* y) {
  const std::string& p = b.prefix;
  const int64_t D = cfg_.d_model, Fe = cfg_.moe.expert_hidden;
  if (bf16_) {
    uint16_t *x16 = rows_on(b.xs16.data(), first, D), *g16 = rows_on(b.g16.data(), first, Fe),
             *u16 = rows_on(b.u16.data(), first, Fe), *h16 = rows_on(b.h16.data(), first, Fe);
    {
      GpuPhase gemms("expert_gemms_fwd", phase_timing_);  // the GEMMs apart from the stage's other work
      experts_fwd_bf16(G, x16, D, p + "/moe/experts/w1", Fe, g16, true);
      experts_fwd_bf16(G, x16, D, p + "/moe/experts/w3", Fe, u16, true);
    }
    cuda::swiglu_forward_bf16(g16, u16, h16, R * Fe);
    GpuPhase gemms("expert_gemms_fwd", phase_timing_);
    experts_fwd_bf16(G, h16, Fe, p + "/moe/experts/w2", D, y, false);
  } else {
    const float* x = rows_on(b.dispatchers.empty() ? b.xs.data() : b.xl.data(), first, D);
    float *gg = rows_on(b.experts.g.data(), first, Fe), *uu = rows_on(b.experts.u.data(), first, Fe),
          *hh = rows_on(b.experts.h.data(), first, Fe);
    grouped_fwd(G, x, D, p + "/moe/experts/w1", Fe, gg);
    grouped_fwd(G, x, D, p + "/moe/experts/w3", Fe, uu);
    cuda::swiglu_forward(gg, uu, hh, R * Fe);
    grouped_fwd(G, hh, Fe, p + "/moe/experts/w2", D, y);
  }
}

// The experts' backward on local rows [first, first + R): dye (fp32, or bf16 in bf16 mode) the
// output rows' gradient; weight gradients accumulate; dx (fp32) the input rows' gradient.
void GpuTransformer::expert_rows_backward(Block& b, const Groups& G, int64_t first, int64_t R, const float* dye,
                                          const void* dye16, float* dx) {
  const std::string& p = b.prefix;
  const int64_t D = cfg_.d_model, Fe = cfg_.moe.expert_hidden;
  if (bf16_) {  // dh over h, dg / du over g / u, all bf16
    uint16_t *x16 = rows_on(b.xs16.data(), first, D), *g16 = rows_on(b.g16.data(), first, Fe),
             *u16 = rows_on(b.u16.data(), first, Fe), *h16 = rows_on(b.h16.data(), first, Fe);
    {
      GpuPhase gemms("expert_gemms_bwd", phase_timing_);
      experts_dw_bf16(G, dye16, D, h16, Fe, p + "/moe/experts/w2");
      experts_dx_bf16(G, dye16, D, p + "/moe/experts/w2", Fe, 0.0f, h16, true);
    }
    cuda::swiglu_backward_bf16(g16, u16, h16, g16, u16, R * Fe);
    GpuPhase gemms("expert_gemms_bwd", phase_timing_);
    experts_dw_bf16(G, g16, Fe, x16, D, p + "/moe/experts/w1");
    experts_dw_bf16(G, u16, Fe, x16, D, p + "/moe/experts/w3");
    experts_dx_bf16(G, g16, Fe, p + "/moe/experts/w1", D, 0.0f, dx, false);
    experts_dx_bf16(G, u16, Fe, p + "/moe/experts/w3", D, 1.0f, dx, false);
  } else {
    float *hh = rows_on(b.experts.h.data(), first, Fe), *gg = rows_on(b.experts.g.data(), first, Fe),
          *uu = rows_on(b.experts.u.data(), first, Fe);
    const float* x = rows_on(b.dispatchers.empty() ? b.xs.data() : b.xl.data(), first, D);  // still intact
    grouped_dw(G, dye, D, hh, Fe, p + "/moe/experts/w2");
    grouped_dx(G, dye, D, p + "/moe/experts/w2", Fe, 0.0f, hh);
    cuda::swiglu_backward(gg, uu, hh, gg, uu, R * Fe);
    grouped_dw(G, gg, Fe, x, D, p + "/moe/experts/w1");
    grouped_dw(G, uu, Fe, x, D, p + "/moe/experts/w3");
    grouped_dx(G, gg, Fe, p + "/moe/experts/w1", D, 0.0f, dx);
    grouped_dx(G, uu, Fe, p + "/moe/experts/w3", D, 1.0f, dx);
  }
}

void GpuTransformer::experts_forward(Block& b) {
  const int64_t T = b.Tm, D = cfg_.d_model, K = cfg_.moe.top_k, Fe = cfg_.moe.expert_hidden;
  const int64_t C = int64_t(b.dispatchers.size());  // 0: no expert parallelism
  const bool rows16 = bf16_ && D % 2 == 0;            // under ep in bf16: rows cross as bf16
  if (C > 1) {  // chunk-major rows, so that a chunk's rows to each rank are contiguous
    b.chunk_offsets.assign(size_t(C * E_ + 1), 0);
    moe_chunk_offsets(b.offsets.data(), E_, C, b.chunk_offsets.data());
    cuda::moe_to_chunk_major(b.offsets.data(), b.chunk_offsets.data(), E_, C, b.row_token.data(), b.slot.data(),
                             T * K);
  } else {
    b.chunk_offsets = b.offsets;
  }
  ensure(b.xs, std::max<int64_t>(b.rows, 1) * D);
  ensure(b.ye, std::max<int64_t>(b.rows, 1) * D);
  cuda::moe_gather(b.moe_in, b.row_token.data(), b.rows, D, b.xs.data());
  if (C == 0) {  // every expert here: one group per expert
    b.local_rows = b.rows;
    const int64_t Rm = std::max<int64_t>(b.rows, 1);
    if (bf16_) {  // rows rounded once; g, u, h kept in bf16 (half the memory and traffic)
      for (auto* a : {&b.g16, &b.u16, &b.h16}) ensure(*a, Rm * Fe);
      ensure(b.xs16, Rm * D);
      cuda::to_bf16(b.xs.data(), b.xs16.data(), b.rows * D);
    } else {
      b.experts.resize(Rm, Fe);
    }
    expert_rows_forward(b, Groups{b.offsets.data(), E_, E_}, 0, b.rows, b.ye.data());
    cuda::moe_unorder_forward(b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.moe_out);
    return;
  }
  // expert parallelism: counts first (over MPI), then every chunk's rows started
  b.local_start.assign(size_t(C + 1), 0);
  for (int64_t c = 0; c < C; ++c) {
    b.dispatchers[size_t(c)]->plan(b.chunk_offsets.data() + c * E_);
    b.local_start[size_t(c + 1)] = b.local_start[size_t(c)] + b.dispatchers[size_t(c)]->local_rows();
  }
  const int64_t R = b.local_start[size_t(C)], Rm = std::max<int64_t>(R, 1);
  b.local_rows = R;
  ensure(b.xl, Rm * D);
  ensure(b.yl, Rm * D);
  if (bf16_) {
    for (auto* a : {&b.g16, &b.u16, &b.h16}) ensure(*a, Rm * Fe);
    ensure(b.xs16, Rm * D);
  } else {
    b.experts.resize(Rm, Fe);
  }
  if (rows16) {  // rounded before the exchange: half the bytes, the same values
    ensure(b.send16, std::max<int64_t>(b.rows, 1) * D);
    cuda::to_bf16(b.xs.data(), b.send16.data(), b.rows * D);
  }
  std::vector<std::unique_ptr<PendingOp>> arrived(static_cast<size_t>(C)), returned(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const int64_t first = b.chunk_offsets[size_t(c * E_)], local = b.local_start[size_t(c)];
    TokenDispatcher& d = *b.dispatchers[size_t(c)];
    arrived[size_t(c)] = rows16 ? d.dispatch_async(rows_on(b.send16.data(), first, D), rows_on(b.xs16.data(), local, D),
                                                   D / 2)
                                : d.dispatch_async(rows_on(b.xs.data(), first, D), rows_on(b.xl.data(), local, D), D);
  }
  for (int64_t c = 0; c < C; ++c) {
    const int64_t first = b.chunk_offsets[size_t(c * E_)], local = b.local_start[size_t(c)];
    const int64_t Rc = b.local_start[size_t(c + 1)] - local;
    TokenDispatcher& d = *b.dispatchers[size_t(c)];
    arrived[size_t(c)]->wait();
    if (bf16_ && !rows16) cuda::to_bf16(rows_on(b.xl.data(), local, D), rows_on(b.xs16.data(), local, D), Rc * D);
    const Groups G{d.local_offsets(), d.num_local_groups(), E_ / ep_host_->size()};
    expert_rows_forward(b, G, local, Rc, rows_on(b.yl.data(), local, D));
    returned[size_t(c)] = d.combine_async(rows_on(b.yl.data(), local, D), rows_on(b.ye.data(), first, D), D);
  }
  for (auto& op : returned) op->wait();
  cuda::moe_unorder_forward(b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.moe_out);
}

void GpuTransformer::experts_backward(Block& b, const float* dy) {
  const int64_t T = b.Tm, D = cfg_.d_model, K = cfg_.moe.top_k;
  const int64_t C = int64_t(b.dispatchers.size());
  const bool rows16 = bf16_ && D % 2 == 0;
  ensure(b.dweights, T * K);
  // unorder backward: dye in place of ye, routing-weight gradients
  cuda::moe_unorder_backward(dy, b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.ye.data(),
                             b.dweights.data());
  if (C == 0) {  // dxs lands in place of xs
    const void* dye16 = bf16_ ? rounded(b.ye.data(), b.rows * D, bf16_a_) : nullptr;
    expert_rows_backward(b, Groups{b.offsets.data(), E_, E_}, 0, b.rows, b.ye.data(), dye16, b.xs.data());
    cuda::moe_gather_backward(b.xs.data(), b.slot.data(), T, K, D, b.moe_out);
    return;
  }
  // the backward of combine is dispatch (dye to the experts' ranks), of dispatch combine (dx back)
  const int64_t R = b.local_rows;
  if (bf16_ && int64_t(bf16_a_.size()) < R * D) bf16_a_ = cuda::DeviceArray<uint16_t>(size_t(std::max<int64_t>(R, 1) * D));
  if (rows16) {  // rounded before the exchange, as the forward's rows
    ensure(b.send16, std::max<int64_t>(b.rows, 1) * D);
    cuda::to_bf16(b.ye.data(), b.send16.data(), b.rows * D);
  }
  std::vector<std::unique_ptr<PendingOp>> arrived(static_cast<size_t>(C)), returned(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const int64_t first = b.chunk_offsets[size_t(c * E_)], local = b.local_start[size_t(c)];
    TokenDispatcher& d = *b.dispatchers[size_t(c)];
    arrived[size_t(c)] = rows16 ? d.dispatch_async(rows_on(b.send16.data(), first, D), rows_on(bf16_a_.data(), local, D),
                                                   D / 2)
                                : d.dispatch_async(rows_on(b.ye.data(), first, D), rows_on(b.yl.data(), local, D), D);
  }
  for (int64_t c = 0; c < C; ++c) {
    const int64_t first = b.chunk_offsets[size_t(c * E_)], local = b.local_start[size_t(c)];
    const int64_t Rc = b.local_start[size_t(c + 1)] - local;
    TokenDispatcher& d = *b.dispatchers[size_t(c)];
    arrived[size_t(c)]->wait();
    const float* dye = rows_on(b.yl.data(), local, D);
    void* dye16 = bf16_ ? rows_on(bf16_a_.data(), local, D) : nullptr;
    if (bf16_ && !rows16) cuda::to_bf16(dye, dye16, Rc * D);
    const Groups G{d.local_offsets(), d.num_local_groups(), E_ / ep_host_->size()};
    expert_rows_backward(b, G, local, Rc, dye, dye16, rows_on(b.xl.data(), local, D));
    returned[size_t(c)] = d.combine_async(rows_on(b.xl.data(), local, D), rows_on(b.xs.data(), first, D), D);
  }
  for (auto& op : returned) op->wait();
  cuda::moe_gather_backward(b.xs.data(), b.slot.data(), T, K, D, b.moe_out);
}

}  // namespace moe::gpu
