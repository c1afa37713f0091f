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

struct Param {
  std::string name;  // e.g. "layers/0/attn/wq"; SPEC path under /model and /optim/exp_avg
  Tensor value;      // this rank's part: the whole tensor, or rows [dim0_offset, +dim0) of it
  Tensor grad;
  Init init = Init::Normal;
  double init_std = 0.0;
  Shape full_shape;         // the logical (SPEC, checkpoint) shape
  int64_t dim0_offset = 0;  // where this rank's rows start along dimension 0
  bool expert = false;      // an expert weight: sharded over the expert-parallel group
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
  // An expert weight of logical shape full_shape of which this rank holds rows
  // [dim0_offset, dim0_offset + dim0) along dimension 0.
  Param& add_expert(const std::string& name, const Shape& full_shape, int64_t dim0, int64_t dim0_offset, Init init,
                    double init_std);
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
