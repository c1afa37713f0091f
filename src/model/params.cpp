// Parameter registry implementation.
#include "model/params.h"

#include "core/error.h"
#include "core/rng.h"

#include <algorithm>

namespace moe {

Param& ParamStore::add(const std::string& name, const Shape& shape, Init init, double init_std) {
  MOE_CHECK(find(name) == nullptr, "parameter '" << name << "' registered twice");
  Param p;
  p.name = name;
  p.value = Tensor::zeros(shape);
  p.grad = Tensor::zeros(shape);
  p.init = init;
  p.init_std = init_std;
  p.full_shape = shape;
  params_.push_back(std::move(p));
  return params_.back();
}

Param& ParamStore::add_expert(const std::string& name, const Shape& full_shape, int64_t dim0, int64_t dim0_offset,
                              Init init, double init_std) {
  MOE_CHECK(dim0_offset >= 0 && dim0_offset + dim0 <= full_shape.at(0),
            "expert shard of '" << name << "' outside " << shape_str(full_shape));
  Shape local = full_shape;
  local[0] = dim0;
  Param& p = add(name, local, init, init_std);
  p.full_shape = full_shape;
  p.dim0_offset = dim0_offset;
  p.expert = true;
  return p;
}

Buffer& ParamStore::add_buffer(const std::string& name, const Shape& shape) {
  buffers_.push_back(Buffer{name, Tensor::zeros(shape)});
  return buffers_.back();
}

std::vector<Param*> ParamStore::params() {
  std::vector<Param*> out;
  for (auto& p : params_) out.push_back(&p);
  return out;
}

std::vector<Buffer*> ParamStore::buffers() {
  std::vector<Buffer*> out;
  for (auto& b : buffers_) out.push_back(&b);
  return out;
}

Param* ParamStore::find(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return &p;
  return nullptr;
}

Buffer* ParamStore::find_buffer(const std::string& name) {
  for (auto& b : buffers_)
    if (b.name == name) return &b;
  return nullptr;
}

void ParamStore::initialize(uint64_t seed) {
  for (auto& p : params_) {
    float* v = p.value.data();
    int64_t n = p.value.numel();
    if (p.init == Init::Ones) {
      for (int64_t i = 0; i < n; ++i) v[i] = 1.0f;
    } else if (p.init == Init::Zeros) {
      p.value.zero();
    } else {
      // Element i of this rank's rows is element first + i of the logical tensor.
      CounterRng rng(seed, p.name);
      const uint64_t first = uint64_t(p.dim0_offset * (n / std::max<int64_t>(1, p.value.dim(0))));
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) v[i] = float(p.init_std * rng.normal(first + uint64_t(i)));
    }
  }
  for (auto& b : buffers_) b.value.zero();
}

void ParamStore::zero_grad() {
  for (auto& p : params_) p.grad.zero();
}

int64_t ParamStore::num_elements() const {
  int64_t n = 0;
  for (const auto& p : params_) n += p.value.numel();
  return n;
}

}  // namespace moe
