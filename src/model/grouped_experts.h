// The Expert stage: E_local SwiGLU experts run as grouped GEMMs over expert-ordered rows.
// w1, w3: [E_local, Fe, D], w2: [E_local, D, Fe] (this rank's rows of the SPEC tensors [E, ...]).
#pragma once
#include <string>

#include "core/tensor.h"
#include "model/params.h"

namespace moe {

class GroupedExperts {
 public:
  GroupedExperts(ParamStore& store, const std::string& prefix, int64_t E, int64_t E_local, int64_t first_expert,
                 int64_t D, int64_t Fe, double init_std, double out_init_std);
  // x: [rows, D] in num_groups groups of rows (offsets [num_groups + 1]); group g is served by local
  // expert g % E_local (one block of E_local groups per source rank after a dispatch; num_groups =
  // E_local without one). Kept until backward. y: [rows, D].
  void forward(const float* x, const int64_t* offsets, int64_t num_groups, float* y);
  // dy: [rows, D] -> dx: [rows, D] (assigned; may alias the forward's x). Weight grads accumulate.
  void backward(const float* dy, float* dx);

 private:
  Param &w1_, &w3_, &w2_;
  int64_t El_, D_, Fe_;
  const float* x_ = nullptr;
  const int64_t* offsets_ = nullptr;
  int64_t groups_ = 0, rows_ = 0;
  Tensor g_, u_, h_;  // [rows, Fe]
};

}  // namespace moe
