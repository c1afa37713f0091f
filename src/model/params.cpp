// Parameter registry implementation.
#include "model/params.h"

#include "core/error.h"
#include "core/rng.h"


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

Param& ParamStore::add_split(const std::string& name, const Shape& full_shape, Split split, int dim, int parts,
                             int index, Init init, double init_std) {
  MOE_CHECK(dim >= 0 && dim < int(full_shape.size()) && parts >= 1 && full_shape[dim] % parts == 0,
            "parameter '" << name << "' " << shape_str(full_shape) << " cannot be split in " << parts
                          << " along dimension " << dim);
  Shape local = full_shape;
  local[dim] = full_shape[dim] / parts;
  Param& p = add(name, local, init, init_std);
  p.full_shape = full_shape;
  p.split = split;
  p.shard_dim = dim;
  p.shard_offset = int64_t(index) * local[dim];
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
      // Local element i is drawn as the element of the logical tensor it stands for.
      CounterRng rng(seed, p.name);
      const Shape& local = p.value.shape();
      int64_t inner = 1;  // elements per step of shard_dim, in the local and in the full tensor
      for (size_t d = size_t(p.shard_dim) + 1; d < local.size(); ++d) inner *= local[d];
      const int64_t local_span = local[p.shard_dim] * inner, full_span = p.full_shape[p.shard_dim] * inner;
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < n; ++i) {
        const int64_t outer = i / local_span, within = i % local_span;
        const int64_t global = outer * full_span + p.shard_offset * inner + within;
        v[i] = float(p.init_std * rng.normal(uint64_t(global)));
      }
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
