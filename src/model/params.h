// Parameter registry: every trainable tensor with its SPEC name (path under /model), logical shape,
// gradient and initialisation; plus non-trained buffers (the expert bias) that checkpoints carry.
#pragma once
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moe {

enum class Init { Normal, Ones, Zeros };

// How a parameter is divided over ranks: not at all, over the tensor-parallel group (attention
// heads, FFN columns/rows, vocabulary), or over the expert-parallel group (whole experts).
enum class Split { None, Tp, Ep };

struct Param {
  std::string name;  // e.g. "layers/0/attn/wq"; SPEC path under /model and /optim/exp_avg
  Tensor value;      // this rank's part: the whole tensor, or a slice along shard_dim
  Tensor grad;
  Init init = Init::Normal;
  double init_std = 0.0;
  Shape full_shape;           // the logical (SPEC, checkpoint) shape
  Split split = Split::None;
  int shard_dim = 0;          // the dimension that is split
  int64_t shard_offset = 0;   // where this rank's slice starts along shard_dim
  // Replicated, but each tensor-parallel rank's gradient covers different tokens (the router and the
  // shared experts run on a tp rank's slice of the tokens): gradients are summed over every rank.
  bool token_sliced = false;
  bool expert() const { return split == Split::Ep; }
  bool decay() const { return value.rank() >= 2; }  // AdamW decays parameters of rank >= 2 only
  bool sharded() const { return full_shape != value.shape(); }
};

struct Buffer {
  std::string name;  // e.g. "layers/1/moe/router/expert_bias"
  Tensor value;
};

class ParamStore {
 public:
  Param& add(const std::string& name, const Shape& shape, Init init, double init_std = 0.0);
  // A parameter of logical shape full_shape split into `parts` equal slices along `dim`, of which
  // this rank holds slice `index`. parts == 1 gives the whole tensor (still marked with `split`).
  Param& add_split(const std::string& name, const Shape& full_shape, Split split, int dim, int parts, int index,
                   Init init, double init_std = 0.0);
  Buffer& add_buffer(const std::string& name, const Shape& shape);  // zero-initialised

  std::vector<Param*> params();
  std::vector<Buffer*> buffers();
  Param* find(const std::string& name);
  Buffer* find_buffer(const std::string& name);

  // Draws initial values: value i of a parameter is normal(0, std) from a counter-based stream
  // keyed by (seed, name), so the result does not depend on the order or the layout.
  void initialize(uint64_t seed);
  void zero_grad();
  int64_t num_elements() const;

 private:
  std::deque<Param> params_;
  std::deque<Buffer> buffers_;
};

}  // namespace moe
