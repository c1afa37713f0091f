// SwiGLU feed-forward: y = (silu(x w1^T) * (x w3^T)) w2^T, w1, w3: [F, D], w2: [D, F].
// Used for dense FFN layers and for the shared experts of an MoE layer (one SwiGLU of width
// num_shared_experts * shared_expert_hidden).
// With a tp group of more than one rank (dense layers), w1/w3 are split by rows and w2 by columns
// (Megatron column / row parallel) and the partial outputs and input gradients summed over it.
#pragma once
#include <string>

#include "core/tensor.h"
#include "model/params.h"
#include "parallel/communicator.h"

namespace moe {

class SwiGluLayer {
 public:
  // `phase` names the profiler phase prefix ("dense_ffn", "shared_experts").
  // tp == nullptr: not split (shared experts run on a tp rank's token slice instead).
  SwiGluLayer(ParamStore& store, const std::string& prefix, int64_t D, int64_t F, double init_std,
              double out_init_std, const char* fwd_phase, const char* bwd_phase, Communicator* tp = nullptr);
  // The weights see only this rank's tokens: gradients are summed over every rank (see Param).
  void mark_token_sliced();
  // x: [T, D] (kept until backward); y: [T, D] assigned.
  void forward(const float* x, float* y, int64_t T);
  // dx assigned (accumulate = false) or added to (accumulate = true).
  void backward(const float* dy, float* dx, bool accumulate);

 private:
  Communicator* tp_;
  Param &w1_, &w3_, &w2_;
  int64_t D_, F_;  // F_: this rank's columns
  const char* fwd_phase_;
  const char* bwd_phase_;
  const float* x_ = nullptr;
  int64_t T_ = 0;
  Tensor g_, u_, h_;  // [T, F]
};

}  // namespace moe
