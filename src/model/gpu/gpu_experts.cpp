// GpuTransformer's expert stage (MoeLayer's experts_fwd / experts_bwd on the GPU): the ordered
// token rows gathered, sent to the ranks holding their experts under expert parallelism
// (TokenDispatcher over a device communicator), the grouped SwiGLU experts (bf16 operands and
// activations in bf16 mode), the results combined back and unordered; and the backward in reverse.
#include <algorithm>
#include <string>

#include "kernels/elementwise.h"
#include "kernels/moe_order.h"
#include "kernels/swiglu.h"
#include "model/gpu/gpu_block.h"
#include "model/gpu/gpu_transformer.h"

namespace moe::gpu {

// Under expert parallelism in bf16 (D even): this rank's rows (fp32, [b.rows, D]) rounded to bf16
// and sent to the experts' ranks as D / 2 floats' worth of bytes each; the local rows land in out16.
void GpuTransformer::dispatch_bf16(Block& b, const float* rows, void* out16) {
  const int64_t D = cfg_.d_model;
  ensure(b.send16, std::max<int64_t>(b.rows, 1) * D);
  cuda::to_bf16(rows, b.send16.data(), b.rows * D);
  b.dispatcher->dispatch(b.send16.data(), out16, D / 2);
}

void GpuTransformer::experts_forward(Block& b) {
  const std::string& p = b.prefix;
  const int64_t T = b.T, D = cfg_.d_model, K = cfg_.moe.top_k, Fe = cfg_.moe.expert_hidden;
  ensure(b.xs, std::max<int64_t>(b.rows, 1) * D);
  ensure(b.ye, std::max<int64_t>(b.rows, 1) * D);
  cuda::moe_gather(b.a2.data(), b.row_token.data(), b.rows, D, b.xs.data());
  Groups G{b.offsets.data(), E_, E_};  // one group per expert
  float *x = b.xs.data(), *y = b.ye.data();
  int64_t R = b.rows;
  if (b.dispatcher) {  // the rows go to the ranks holding their experts (collective over ep)
    b.dispatcher->plan(b.offsets.data());
    R = b.dispatcher->local_rows();
    ensure(b.xl, std::max<int64_t>(R, 1) * D);
    ensure(b.yl, std::max<int64_t>(R, 1) * D);
    G = Groups{b.dispatcher->local_offsets(), b.dispatcher->num_local_groups(), E_ / ep_host_->size()};
    x = b.xl.data(), y = b.yl.data();
  }
  b.local_rows = R;
  const int64_t Rm = std::max<int64_t>(R, 1);
  if (bf16_) {  // rows rounded once; g, u, h kept in bf16 (half the memory and traffic)
    for (auto* a : {&b.g16, &b.u16, &b.h16}) ensure(*a, Rm * Fe);
    ensure(b.xs16, Rm * D);
    if (b.dispatcher && D % 2 == 0) {  // rounded before the exchange: half the bytes, the same values
      dispatch_bf16(b, b.xs.data(), b.xs16.data());
    } else {
      if (b.dispatcher) b.dispatcher->dispatch(b.xs.data(), b.xl.data());
      cuda::to_bf16(x, b.xs16.data(), R * D);
    }
    {
      GpuPhase gemms("expert_gemms_fwd", phase_timing_);  // the GEMMs apart from the stage's other work
      experts_fwd_bf16(G, b.xs16.data(), D, p + "/moe/experts/w1", Fe, b.g16.data(), true);
      experts_fwd_bf16(G, b.xs16.data(), D, p + "/moe/experts/w3", Fe, b.u16.data(), true);
    }
    cuda::swiglu_forward_bf16(b.g16.data(), b.u16.data(), b.h16.data(), R * Fe);
    GpuPhase gemms("expert_gemms_fwd", phase_timing_);
    experts_fwd_bf16(G, b.h16.data(), Fe, p + "/moe/experts/w2", D, y, false);
  } else {
    if (b.dispatcher) b.dispatcher->dispatch(b.xs.data(), b.xl.data());
    b.experts.resize(Rm, Fe);
    grouped_fwd(G, x, D, p + "/moe/experts/w1", Fe, b.experts.g.data());
    grouped_fwd(G, x, D, p + "/moe/experts/w3", Fe, b.experts.u.data());
    cuda::swiglu_forward(b.experts.g.data(), b.experts.u.data(), b.experts.h.data(), R * Fe);
    grouped_fwd(G, b.experts.h.data(), Fe, p + "/moe/experts/w2", D, y);
  }
  if (b.dispatcher) b.dispatcher->combine(b.yl.data(), b.ye.data());
  cuda::moe_unorder_forward(b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.tmp.data());
}

void GpuTransformer::experts_backward(Block& b, const float* dy) {
  const std::string& p = b.prefix;
  const int64_t T = b.T, D = cfg_.d_model, K = cfg_.moe.top_k, Fe = cfg_.moe.expert_hidden;
  ensure(b.dweights, T * K);
  // unorder backward: dye in place of ye, routing-weight gradients
  cuda::moe_unorder_backward(dy, b.ye.data(), b.slot.data(), b.weights.data(), T, K, D, b.ye.data(),
                             b.dweights.data());
  Groups G{b.offsets.data(), E_, E_};
  float *dye = b.ye.data(), *dx = b.xs.data();  // dxs lands in place of xs
  const int64_t R = b.local_rows;
  if (b.dispatcher) {  // the backward of combine is dispatch: dye to the experts' ranks
    G = Groups{b.dispatcher->local_offsets(), b.dispatcher->num_local_groups(), E_ / ep_host_->size()};
    dye = b.yl.data(), dx = b.xl.data();
  }
  if (bf16_) {  // dh over h, dg / du over g / u, all bf16
    const void* dye16 = nullptr;
    if (b.dispatcher && D % 2 == 0) {  // rounded before the exchange, as the forward's rows
      if (int64_t(bf16_a_.size()) < R * D) bf16_a_ = cuda::DeviceArray<uint16_t>(size_t(std::max<int64_t>(R, 1) * D));
      dispatch_bf16(b, b.ye.data(), bf16_a_.data());
      dye16 = bf16_a_.data();
    } else {
      if (b.dispatcher) b.dispatcher->dispatch(b.ye.data(), b.yl.data());
      dye16 = rounded(dye, R * D, bf16_a_);
    }
    {
      GpuPhase gemms("expert_gemms_bwd", phase_timing_);
      experts_dw_bf16(G, dye16, D, b.h16.data(), Fe, p + "/moe/experts/w2");
      experts_dx_bf16(G, dye16, D, p + "/moe/experts/w2", Fe, 0.0f, b.h16.data(), true);
    }
    cuda::swiglu_backward_bf16(b.g16.data(), b.u16.data(), b.h16.data(), b.g16.data(), b.u16.data(), R * Fe);
    GpuPhase gemms("expert_gemms_bwd", phase_timing_);
    experts_dw_bf16(G, b.g16.data(), Fe, b.xs16.data(), D, p + "/moe/experts/w1");
    experts_dw_bf16(G, b.u16.data(), Fe, b.xs16.data(), D, p + "/moe/experts/w3");
    experts_dx_bf16(G, b.g16.data(), Fe, p + "/moe/experts/w1", D, 0.0f, dx, false);
    experts_dx_bf16(G, b.u16.data(), Fe, p + "/moe/experts/w3", D, 1.0f, dx, false);
  } else {
    if (b.dispatcher) b.dispatcher->dispatch(b.ye.data(), b.yl.data());
    float *hh = b.experts.h.data(), *gg = b.experts.g.data(), *uu = b.experts.u.data();
    const float* x = b.dispatcher ? b.xl.data() : b.xs.data();  // the expert inputs, still intact
    grouped_dw(G, dye, D, hh, Fe, p + "/moe/experts/w2");
    grouped_dx(G, dye, D, p + "/moe/experts/w2", Fe, 0.0f, hh);
    cuda::swiglu_backward(gg, uu, hh, gg, uu, R * Fe);
    grouped_dw(G, gg, Fe, x, D, p + "/moe/experts/w1");
    grouped_dw(G, uu, Fe, x, D, p + "/moe/experts/w3");
    grouped_dx(G, gg, Fe, p + "/moe/experts/w1", D, 0.0f, dx);
    grouped_dx(G, uu, Fe, p + "/moe/experts/w3", D, 1.0f, dx);
  }
  if (b.dispatcher) b.dispatcher->combine(b.xl.data(), b.xs.data());  // the backward of dispatch
  cuda::moe_gather_backward(b.xs.data(), b.slot.data(), T, K, D, b.tmp.data());
}

}  // namespace moe::gpu
