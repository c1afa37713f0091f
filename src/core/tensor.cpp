// Tensor storage: aligned allocation, views, reusable buffers.
#include "core/tensor.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace moe {

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

static std::shared_ptr<float> allocate(int64_t n) {
  size_t bytes = ((static_cast<size_t>(n > 0 ? n : 1) * sizeof(float) + 63) / 64) * 64;
  void* p = std::aligned_alloc(64, bytes);
  MOE_CHECK(p != nullptr, "out of host memory allocating " << bytes << " bytes");
  return std::shared_ptr<float>(static_cast<float*>(p), [](float* q) { std::free(q); });
}

Tensor Tensor::empty(const Shape& shape) {
  for (auto d : shape) MOE_CHECK(d >= 0, "negative dimension in shape " << shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.capacity_ = shape_numel(shape);
  t.storage_ = allocate(t.capacity_);
  return t;
}

Tensor Tensor::zeros(const Shape& shape) {
  Tensor t = empty(shape);
  t.zero();
  return t;
}

void Tensor::zero() {
  if (numel() > 0) std::memset(data(), 0, sizeof(float) * numel());
}

void Tensor::copy_from(const Tensor& other) {
  MOE_CHECK(other.numel() == numel(), "copy between tensors of " << shape_str(other.shape()) << " and "
                                                                  << shape_str(shape_));
  if (numel() > 0) std::memcpy(data(), other.data(), sizeof(float) * numel());
}

Tensor Tensor::view(int64_t offset, const Shape& shape) const {
  MOE_CHECK(offset >= 0 && offset + shape_numel(shape) <= capacity_,
            "view " << shape_str(shape) << " at offset " << offset << " outside storage of " << capacity_);
  Tensor t;
  t.storage_ = storage_;
  t.offset_ = offset_ + offset;
  t.capacity_ = shape_numel(shape);
  t.shape_ = shape;
  return t;
}

void Tensor::resize(const Shape& shape) {
  int64_t n = shape_numel(shape);
  if (!storage_ || n > capacity_) {
    storage_ = allocate(n);
    offset_ = 0;
    capacity_ = n;
  }
  shape_ = shape;
}

}  // namespace moe
