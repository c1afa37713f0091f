// GpuTransformer's parameter accessors and matmuls (gpu_transformer.h): the dense and grouped GEMMs
// by weight name, in fp32 or on bf16 operands, and the SwiGLU FFN built from them. The forward and
// backward that call them: gpu_transformer.cpp.
#include <string>

#include "core/error.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/swiglu.h"
#include "model/gpu/gpu_transformer.h"

namespace moe::gpu {

using cuda::DeviceArray;

float* GpuTransformer::w(const std::string& name) {
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end(), "GPU model: no parameter " << name);
  return it->second.value.data();
}

float* GpuTransformer::g(const std::string& name) {
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end(), "GPU model: no parameter " << name);
  return it->second.grad.data();
}

const float* GpuTransformer::buffer(const std::string& name) const {
  auto it = buffers_.find(name);
  return it == buffers_.end() ? nullptr : it->second.data();
}

const void* GpuTransformer::wb(const std::string& name) {
  auto it = params_.find(name);
  MOE_CHECK(it != params_.end() && it->second.bf16.size() > 0, "GPU model: no bf16 copy of " << name);
  return it->second.bf16.data();
}

const void* GpuTransformer::rounded(const float* x, int64_t n, DeviceArray<uint16_t>& scratch) {
  if (int64_t(scratch.size()) < n) scratch = DeviceArray<uint16_t>(size_t(n));
  cuda::to_bf16(x, scratch.data(), n);
  return scratch.data();
}

GpuTransformer::Operand GpuTransformer::operand(const float* x, int64_t n, DeviceArray<uint16_t>& scratch) {
  return Operand{x, bf16_ ? rounded(x, n, scratch) : nullptr};
}

void GpuTransformer::linear_fwd(const Operand& x, int64_t T, int64_t in, const std::string& W, int64_t out, float* y) {
  if (!bf16_) return cuda::gemm(false, true, T, out, in, 1.0f, x.f32, in, w(W), in, 0.0f, y, out);
  cuda::gemm_bf16(false, true, T, out, in, 1.0f, x.b16, in, wb(W), in, 0.0f, y, out, false);
}

void GpuTransformer::linear_dx(const Operand& dy, int64_t T, int64_t out, const std::string& W, int64_t in, float beta,
                               float* dx) {
  if (!bf16_) return cuda::gemm(false, false, T, in, out, 1.0f, dy.f32, out, w(W), in, beta, dx, in);
  cuda::gemm_bf16(false, false, T, in, out, 1.0f, dy.b16, out, wb(W), in, beta, dx, in, false);
}

void GpuTransformer::linear_dw(const Operand& dy, int64_t T, int64_t out, const Operand& x, int64_t in,
                               const std::string& W) {
  if (!bf16_) return cuda::gemm(true, false, out, in, T, 1.0f, dy.f32, out, x.f32, in, 1.0f, g(W), in);
  cuda::gemm_bf16(true, false, out, in, T, 1.0f, dy.b16, out, x.b16, in, 1.0f, g(W), in, false);
}

void GpuTransformer::linear_fwd(const float* x, int64_t T, int64_t in, const std::string& W, int64_t out, float* y) {
  linear_fwd(operand(x, T * in, bf16_a_), T, in, W, out, y);
}

void GpuTransformer::linear_dx(const float* dy, int64_t T, int64_t out, const std::string& W, int64_t in, float beta,
                               float* dx) {
  linear_dx(operand(dy, T * out, bf16_a_), T, out, W, in, beta, dx);
}

void GpuTransformer::linear_dw(const float* dy, int64_t T, int64_t out, const float* x, int64_t in,
                               const std::string& W) {
  linear_dw(operand(dy, T * out, bf16_a_), T, out, operand(x, T * in, bf16_b_), in, W);
}

void GpuTransformer::grouped_fwd(const Groups& G, const float* x, int64_t in, const std::string& W, int64_t out,
                                 float* y) {
  const int64_t* off = G.offsets;
  if (!bf16_)
    return cuda::gemm_grouped_rows(G.groups, G.weights, off, true, out, in, 1.0f, x, in, w(W), out * in, in, 0.0f, y, out,
                                   grouped_.rows);
  cuda::gemm_grouped_rows_bf16(G.groups, G.weights, off, true, out, in, 1.0f, rounded(x, off[G.groups] * in, bf16_a_), in, wb(W),
                               out * in, in, 0.0f, y, out, false, grouped_.rows);
}

void GpuTransformer::grouped_dx(const Groups& G, const float* dy, int64_t out, const std::string& W, int64_t in,
                                float beta, float* dx) {
  const int64_t* off = G.offsets;
  if (!bf16_)
    return cuda::gemm_grouped_rows(G.groups, G.weights, off, false, in, out, 1.0f, dy, out, w(W), out * in, in, beta, dx, in,
                                   grouped_.rows);
  cuda::gemm_grouped_rows_bf16(G.groups, G.weights, off, false, in, out, 1.0f, rounded(dy, off[G.groups] * out, bf16_a_), out, wb(W),
                               out * in, in, beta, dx, in, false, grouped_.rows);
}

void GpuTransformer::grouped_dw(const Groups& G, const float* dy, int64_t out, const float* x, int64_t in,
                                const std::string& W) {
  const int64_t* off = G.offsets;
  if (!bf16_)
    return cuda::gemm_grouped_weight_grad(G.groups, G.weights, off, out, in, dy, out, x, in, g(W), out * in, grouped_.weight_grad);
  cuda::gemm_grouped_weight_grad_bf16(G.groups, G.weights, off, out, in, rounded(dy, off[G.groups] * out, bf16_a_), out,
                                      rounded(x, off[G.groups] * in, bf16_b_), in, g(W), out * in, grouped_.weight_grad);
}

void GpuTransformer::experts_fwd_bf16(const Groups& G, const void* x16, int64_t in, const std::string& W,
                                      int64_t out, void* y, bool y_bf16) {
  const int64_t* off = G.offsets;
  cuda::gemm_grouped_rows_bf16(G.groups, G.weights, off, true, out, in, 1.0f, x16, in, wb(W), out * in, in, 0.0f, y, out, y_bf16,
                               grouped_.rows);
}

void GpuTransformer::experts_dx_bf16(const Groups& G, const void* dy16, int64_t out, const std::string& W,
                                     int64_t in, float beta, void* dx, bool dx_bf16) {
  const int64_t* off = G.offsets;
  cuda::gemm_grouped_rows_bf16(G.groups, G.weights, off, false, in, out, 1.0f, dy16, out, wb(W), out * in, in, beta, dx, in, dx_bf16,
                               grouped_.rows);
}

void GpuTransformer::experts_dw_bf16(const Groups& G, const void* dy16, int64_t out, const void* x16, int64_t in,
                                     const std::string& W) {
  const int64_t* off = G.offsets;
  cuda::gemm_grouped_weight_grad_bf16(G.groups, G.weights, off, out, in, dy16, out, x16, in, g(W), out * in, grouped_.weight_grad);
}

// SwiGluLayer::forward: y = (silu(x W1^T) * (x W3^T)) W2^T, x: [T, D], W1, W3: [F, D], W2: [D, F].
void GpuTransformer::swiglu_forward(const std::string& prefix, const float* x, int64_t T, int64_t D, int64_t F,
                                    float* gg, float* uu, float* hh, float* y) {
  const Operand xo = operand(x, T * D, bf16_b_);  // rounded once for both up-projections
  linear_fwd(xo, T, D, prefix + "/w1", F, gg);
  linear_fwd(xo, T, D, prefix + "/w3", F, uu);
  cuda::swiglu_forward(gg, uu, hh, T * F);
  linear_fwd(hh, T, F, prefix + "/w2", D, y);
}

// SwiGluLayer::backward: weight gradients accumulate; dx assigned, or accumulated when asked.
void GpuTransformer::swiglu_backward(const std::string& prefix, const float* x, int64_t T, int64_t D, int64_t F,
                                     float* gg, float* uu, float* hh, const float* dy, float* dx, bool accumulate) {
  const Operand dyo = operand(dy, T * D, bf16_a_);  // every operand rounded once
  linear_dw(dyo, T, D, operand(hh, T * F, bf16_b_), F, prefix + "/w2");
  linear_dx(dyo, T, D, prefix + "/w2", F, 0.0f, hh);
  cuda::swiglu_backward(gg, uu, hh, gg, uu, T * F);
  const Operand xo = operand(x, T * D, bf16_b_), go = operand(gg, T * F, bf16_a_);
  linear_dw(go, T, F, xo, D, prefix + "/w1");
  linear_dx(go, T, F, prefix + "/w1", D, accumulate ? 1.0f : 0.0f, dx);
  const Operand uo = operand(uu, T * F, bf16_a_);
  linear_dw(uo, T, F, xo, D, prefix + "/w3");
  linear_dx(uo, T, F, prefix + "/w3", D, 1.0f, dx);
}

}  // namespace moe::gpu
