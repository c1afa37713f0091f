// AdamW update with PyTorch semantics (torch.optim.AdamW, single-tensor path), in place:
//   p *= 1 - lr * weight_decay;  m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - beta_i^step.
#pragma once
#include <cstdint>

#include "kernels/cuda_stream.h"

namespace moe {

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float bias_correction1, float bias_correction2);

// ---- CUDA twin (kernels/cuda/adamw.cu; built when the build has CUDA, MOE_WITH_CUDA): same
// semantics on device pointers, launched on `stream`. ----
namespace cuda {
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2,
                  float eps, float weight_decay, float bias_correction1, float bias_correction2,
                  Stream stream = nullptr);
// One tensor of a multi-tensor update (device pointers). p_bf16: where to write the bf16 copy of
// the updated weight for bf16 training (nullptr: none).
struct AdamWTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  void* p_bf16;
  int64_t n;
  float weight_decay;
};
// Every tensor in ONE launch; the gradients are multiplied by grad_scale (the clipping coefficient)
// as they are read.
void adamw_update_many(const AdamWTensor* tensors, int count, float lr, float beta1, float beta2, float eps,
                       float bias_correction1, float bias_correction2, float grad_scale, Stream stream = nullptr);
}  // namespace cuda

}  // namespace moe
