// Tensor: a shape over shared, 64-byte aligned storage. fp32 on the CPU for now; dtype and device
// are carried so the CUDA backend (issue 5) can add its own storage without changing callers.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moe {

enum class DType { F32 };
enum class Device { CPU };

using Shape = std::vector<int64_t>;
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[4, 8]"

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(const Shape& shape);  // uninitialised
  static Tensor zeros(const Shape& shape);

  float* data() { return storage_ ? storage_.get() + offset_ : nullptr; }
  const float* data() const { return storage_ ? storage_.get() + offset_ : nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const { return shape_numel(shape_); }
  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return DType::F32; }
  Device device() const { return Device::CPU; }

  void zero();
  void copy_from(const Tensor& other);  // same numel
  // A view of `shape` starting `offset` elements in; shares storage.
  Tensor view(int64_t offset, const Shape& shape) const;
  // Grows storage if needed and sets the shape (contents undefined). For reusable work buffers.
  void resize(const Shape& shape);

 private:
  std::shared_ptr<float> storage_;
  int64_t offset_ = 0;
  int64_t capacity_ = 0;
  Shape shape_;
};

}  // namespace moe
