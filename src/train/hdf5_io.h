// Thin HDF5 helpers for checkpoints: RAII file handle, float32 datasets at full logical shape,
// scalar attributes. Every failure throws moe::Error naming the file and the object.
#pragma once
#include <hdf5.h>
#include <mpi.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moe {

class H5File {
 public:
  static H5File create(const std::string& path);    // truncates
  // Every rank of comm opens the file together through MPI-IO (parallel HDF5). From then on every
  // metadata call (attributes, dataset creation) and every write is collective: all ranks make the
  // same calls in the same order, each writing only the part it is given (possibly nothing).
  static H5File create_parallel(const std::string& path, MPI_Comm comm);
  static H5File open_read(const std::string& path);  // throws when missing or not HDF5
  H5File(H5File&& other) noexcept;
  ~H5File();
  H5File(const H5File&) = delete;
  H5File& operator=(const H5File&) = delete;

  const std::string& path() const { return path_; }
  void close();   // flushes; throws on failure
  bool exists(const std::string& object_path) const;  // every component checked

  // Creates a float32 dataset of `full_shape` at `object_path` (groups created as needed), chunked
  // with the Fletcher32 checksum filter so corruption is detected on read, and writes into it the
  // slice [offset, offset + local_shape[dim]) along `dim` from `data` (laid out as local_shape),
  // or nothing when !active. A serial file given the whole tensor writes its chunks directly with
  // our own Fletcher32 (src/train/fletcher32.h); the stored bytes are those the filter would store.
  void write_floats_slice(const std::string& object_path, const std::vector<int64_t>& full_shape, int dim,
                          int64_t offset, const std::vector<int64_t>& local_shape, const float* data, bool active);
  void write_floats(const std::string& object_path, const std::vector<int64_t>& shape, const float* data,
                    bool active = true) {
    write_floats_slice(object_path, shape, 0, 0, shape, data, active);
  }
  std::vector<int64_t> dataset_shape(const std::string& object_path) const;
  // Every dataset in the file ("/model/embed/weight", ...), in name order.
  std::vector<std::string> list_datasets() const;
  // The whole dataset. Chunks are read directly and their Fletcher32 checked by us when the dataset
  // has the layout write_floats_slice gives; anything else goes through HDF5's filter pipeline.
  void read_floats(const std::string& object_path, float* data) const;
  // The slice [offset, offset + count) along dimension `dim` only (a shard), through an HDF5 hyperslab.
  void read_floats_slice(const std::string& object_path, int dim, int64_t offset, int64_t count, float* data) const;

  // Attributes on an object ("/" for the root).
  void set_attr(const std::string& object_path, const std::string& name, const std::string& value);
  void set_attr(const std::string& object_path, const std::string& name, int64_t value);
  std::optional<std::string> get_string_attr(const std::string& object_path, const std::string& name) const;
  std::optional<int64_t> get_int_attr(const std::string& object_path, const std::string& name) const;

 private:
  H5File(hid_t id, std::string path, bool parallel = false) : id_(id), path_(std::move(path)), parallel_(parallel) {}
  void write_chunks_direct(hid_t dset, const std::string& object_path, const std::vector<int64_t>& full_shape,
                           const std::vector<hsize_t>& chunk, const float* data);
  bool read_chunks_direct(hid_t dset, const std::string& object_path, float* data) const;
  hid_t id_ = -1;
  std::string path_;
  bool parallel_ = false;
  mutable std::vector<unsigned char> chunk_buffer_;  // direct chunk I/O, reused across datasets
};

}  // namespace moe
