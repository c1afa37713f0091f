// HDF5 helpers.
#include "train/hdf5_io.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "train/fletcher32.h"

namespace moe {
namespace {

struct Handle {  // closes an hid_t with the matching H5*close
  hid_t id;
  herr_t (*closer)(hid_t);
  ~Handle() {
    if (id >= 0) closer(id);
  }
};

void quiet_hdf5() {
  static bool done = false;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);  // we report errors ourselves
    done = true;
  }
}

}  // namespace

H5File H5File::create(const std::string& path) {
  quiet_hdf5();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  MOE_CHECK(id >= 0, "checkpoint '" << path << "': cannot be created");
  return H5File(id, path);
}

H5File H5File::create_parallel(const std::string& path, MPI_Comm comm) {
  quiet_hdf5();
  Handle fapl{H5Pcreate(H5P_FILE_ACCESS), H5Pclose};
  H5Pset_fapl_mpio(fapl.id, comm, MPI_INFO_NULL);
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.id);
  MOE_CHECK(id >= 0, "checkpoint '" << path << "': cannot be created (parallel HDF5)");
  return H5File(id, path, true);
}

H5File H5File::open_read(const std::string& path) {
  quiet_hdf5();
  FILE* f = std::fopen(path.c_str(), "rb");
  MOE_CHECK(f != nullptr, "checkpoint '" << path << "': file does not exist or cannot be read");
  std::fclose(f);
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  MOE_CHECK(id >= 0, "checkpoint '" << path << "': not a readable HDF5 file (truncated or of another format)");
  return H5File(id, path);
}

H5File::H5File(H5File&& other) noexcept : id_(other.id_), path_(std::move(other.path_)), parallel_(other.parallel_) {
  other.id_ = -1;
}

H5File::~H5File() {
  if (id_ >= 0) H5Fclose(id_);
}

void H5File::close() {
  if (id_ < 0) return;
  herr_t flushed = H5Fflush(id_, H5F_SCOPE_GLOBAL);
  herr_t closed = H5Fclose(id_);
  id_ = -1;
  MOE_CHECK(flushed >= 0 && closed >= 0, "checkpoint '" << path_ << "': flush/close failed (disk full?)");
}

bool H5File::exists(const std::string& object_path) const {
  if (object_path == "/") return true;
  size_t pos = 0;
  while (true) {
    pos = object_path.find('/', pos + 1);
    std::string prefix = object_path.substr(0, pos);
    if (H5Lexists(id_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (pos == std::string::npos) return true;
  }
}

namespace {

// Chunk shape of a checkpoint dataset: the whole tensor, its leading dimension cut so a chunk holds
// at most 1M floats (4 MiB). Fletcher32 covers each chunk.
std::vector<hsize_t> chunk_shape_of(const std::vector<int64_t>& full_shape) {
  std::vector<hsize_t> chunk(full_shape.begin(), full_shape.end());
  int64_t n = 1;
  for (auto d : full_shape) n *= d;
  const int64_t inner = n / std::max<int64_t>(1, full_shape[0]);
  chunk[0] = hsize_t(std::max<int64_t>(1, std::min<int64_t>(full_shape[0], (1 << 20) / std::max<int64_t>(1, inner))));
  return chunk;
}

// Direct chunk I/O hands HDF5 the file's bytes: only valid when memory floats are the file's type.
bool native_float_is_file_type() {
  static const bool same = H5Tequal(H5T_NATIVE_FLOAT, H5T_IEEE_F32LE) > 0;
  return same;
}

}  // namespace

void H5File::write_floats_slice(const std::string& object_path, const std::vector<int64_t>& full_shape, int dim,
                                int64_t offset, const std::vector<int64_t>& local_shape, const float* data,
                                bool active) {
  std::vector<hsize_t> dims(full_shape.begin(), full_shape.end());
  Handle space{H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  int64_t n = 1;
  for (auto d : full_shape) n *= d;
  std::vector<hsize_t> chunk;
  if (n > 0 && !dims.empty()) {
    chunk = chunk_shape_of(full_shape);
    H5Pset_chunk(dcpl.id, int(chunk.size()), chunk.data());
    H5Pset_fletcher32(dcpl.id);
  }
  Handle dset{H5Dcreate2(id_, object_path.c_str(), H5T_IEEE_F32LE, space.id, lcpl.id, dcpl.id, H5P_DEFAULT),
              H5Dclose};
  MOE_CHECK(dset.id >= 0, "checkpoint '" << path_ << "': cannot create dataset " << object_path);
  if (n == 0) return;
  if (!parallel_ && active && local_shape == full_shape && native_float_is_file_type()) {
    write_chunks_direct(dset.id, object_path, full_shape, chunk, data);
    return;
  }
  Handle fspace{H5Dget_space(dset.id), H5Sclose};
  std::vector<hsize_t> mdims(local_shape.begin(), local_shape.end());
  Handle mspace{H5Screate_simple(int(mdims.size()), mdims.data(), nullptr), H5Sclose};
  if (active) {
    std::vector<hsize_t> start(dims.size(), 0), count(dims);
    start[dim] = hsize_t(offset);
    count[dim] = hsize_t(local_shape[dim]);
    H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  } else {
    H5Sselect_none(fspace.id);
    H5Sselect_none(mspace.id);
  }
  Handle xfer{H5Pcreate(H5P_DATASET_XFER), H5Pclose};
  if (parallel_) H5Pset_dxpl_mpio(xfer.id, H5FD_MPIO_COLLECTIVE);  // filtered datasets need collective I/O
  MOE_CHECK(H5Dwrite(dset.id, H5T_NATIVE_FLOAT, mspace.id, fspace.id, xfer.id, data) >= 0,
            "checkpoint '" << path_ << "': writing " << object_path << " failed");
}

// One writer holding the whole tensor: each chunk is copied once into a reused buffer, padded with
// the fill value (0) past the last row, its Fletcher32 appended, and handed to HDF5 as stored bytes.
void H5File::write_chunks_direct(hid_t dset, const std::string& object_path, const std::vector<int64_t>& full_shape,
                                 const std::vector<hsize_t>& chunk, const float* data) {
  size_t inner = 1;
  for (size_t d = 1; d < full_shape.size(); ++d) inner *= size_t(full_shape[d]);
  const size_t rows = chunk[0], chunk_bytes = rows * inner * sizeof(float);
  chunk_buffer_.resize(chunk_bytes + 4);
  std::vector<hsize_t> at(full_shape.size(), 0);
  for (int64_t r0 = 0; r0 < full_shape[0]; r0 += int64_t(rows)) {
    const size_t have = size_t(std::min<int64_t>(int64_t(rows), full_shape[0] - r0)) * inner * sizeof(float);
    std::memcpy(chunk_buffer_.data(), data + size_t(r0) * inner, have);
    std::memset(chunk_buffer_.data() + have, 0, chunk_bytes - have);
    const size_t stored = append_fletcher32(chunk_buffer_.data(), chunk_bytes);
    at[0] = hsize_t(r0);
    MOE_CHECK(H5Dwrite_chunk(dset, H5P_DEFAULT, 0, at.data(), stored, chunk_buffer_.data()) >= 0,
              "checkpoint '" << path_ << "': writing " << object_path << " failed");
  }
}

std::vector<int64_t> H5File::dataset_shape(const std::string& object_path) const {
  MOE_CHECK(exists(object_path), "checkpoint '" << path_ << "': dataset " << object_path << " is missing");
  Handle dset{H5Dopen2(id_, object_path.c_str(), H5P_DEFAULT), H5Dclose};
  MOE_CHECK(dset.id >= 0, "checkpoint '" << path_ << "': " << object_path << " is not a dataset");
  Handle space{H5Dget_space(dset.id), H5Sclose};
  int nd = H5Sget_simple_extent_ndims(space.id);
  MOE_CHECK(nd >= 0, "checkpoint '" << path_ << "': " << object_path << " has no simple shape");
  std::vector<hsize_t> dims(nd);
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

static herr_t collect_dataset(hid_t, const char* name, const H5O_info_t* info, void* out) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(out)->push_back(std::string("/") + name);
  return 0;
}

std::vector<std::string> H5File::list_datasets() const {
  std::vector<std::string> names;
  MOE_CHECK(H5Ovisit(id_, H5_INDEX_NAME, H5_ITER_INC, collect_dataset, &names) >= 0,
            "checkpoint '" << path_ << "': cannot list its datasets");
  std::sort(names.begin(), names.end());
  return names;
}

// The reverse of write_chunks_direct. Returns false, having written nothing it vouches for, when the
// dataset is laid out otherwise or any chunk looks wrong (unexpected size, filter skipped, checksum
// mismatch); the caller then reads through HDF5's pipeline, which reports the problem itself.
bool H5File::read_chunks_direct(hid_t dset, const std::string& /*object_path*/, float* data) const {
  if (!native_float_is_file_type()) return false;
  Handle type{H5Dget_type(dset), H5Tclose};
  if (H5Tequal(type.id, H5T_IEEE_F32LE) <= 0) return false;
  Handle dcpl{H5Dget_create_plist(dset), H5Pclose};
  if (H5Pget_layout(dcpl.id) != H5D_CHUNKED || H5Pget_nfilters(dcpl.id) != 1) return false;
  unsigned flags = 0, config = 0;
  size_t nvalues = 0;
  if (H5Pget_filter2(dcpl.id, 0, &flags, &nvalues, nullptr, 0, nullptr, &config) != H5Z_FILTER_FLETCHER32) return false;
  Handle space{H5Dget_space(dset), H5Sclose};
  const int nd = H5Sget_simple_extent_ndims(space.id);
  if (nd < 1) return false;
  std::vector<hsize_t> dims(nd), chunk(nd);
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  if (H5Pget_chunk(dcpl.id, nd, chunk.data()) != nd) return false;
  size_t inner = 1;
  for (int d = 1; d < nd; ++d) {
    if (chunk[d] != dims[d]) return false;
    inner *= size_t(dims[d]);
  }
  const size_t chunk_bytes = size_t(chunk[0]) * inner * sizeof(float);
  chunk_buffer_.resize(chunk_bytes + 4);
  std::vector<hsize_t> at(nd, 0);
  for (hsize_t r0 = 0; r0 < dims[0]; r0 += chunk[0]) {
    at[0] = r0;
    hsize_t stored = 0;
    uint32_t skipped = 0;
    if (H5Dget_chunk_storage_size(dset, at.data(), &stored) < 0 || stored != chunk_bytes + 4) return false;
    if (H5Dread_chunk(dset, H5P_DEFAULT, at.data(), &skipped, chunk_buffer_.data()) < 0 || skipped != 0) return false;
    if (!fletcher32_matches(chunk_buffer_.data(), chunk_bytes + 4)) return false;
    const size_t rows = size_t(std::min<hsize_t>(chunk[0], dims[0] - r0));
    std::memcpy(data + size_t(r0) * inner, chunk_buffer_.data(), rows * inner * sizeof(float));
  }
  return true;
}

void H5File::read_floats(const std::string& object_path, float* data) const {
  Handle dset{H5Dopen2(id_, object_path.c_str(), H5P_DEFAULT), H5Dclose};
  MOE_CHECK(dset.id >= 0, "checkpoint '" << path_ << "': dataset " << object_path << " is missing");
  if (read_chunks_direct(dset.id, object_path, data)) return;
  MOE_CHECK(H5Dread(dset.id, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0,
            "checkpoint '" << path_ << "': reading " << object_path
                           << " failed (checksum mismatch, truncated or corrupt file)");
}

void H5File::read_floats_slice(const std::string& object_path, int dim, int64_t offset, int64_t count_d,
                               float* data) const {
  Handle dset{H5Dopen2(id_, object_path.c_str(), H5P_DEFAULT), H5Dclose};
  MOE_CHECK(dset.id >= 0, "checkpoint '" << path_ << "': dataset " << object_path << " is missing");
  Handle fspace{H5Dget_space(dset.id), H5Sclose};
  int nd = H5Sget_simple_extent_ndims(fspace.id);
  MOE_CHECK(nd > dim, "checkpoint '" << path_ << "': " << object_path << " has no dimension " << dim << " to slice");
  std::vector<hsize_t> dims(nd), start(nd, 0), count(nd);
  H5Sget_simple_extent_dims(fspace.id, dims.data(), nullptr);
  count = dims;
  start[dim] = hsize_t(offset);
  count[dim] = hsize_t(count_d);
  H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Handle mspace{H5Screate_simple(nd, count.data(), nullptr), H5Sclose};
  MOE_CHECK(H5Dread(dset.id, H5T_NATIVE_FLOAT, mspace.id, fspace.id, H5P_DEFAULT, data) >= 0,
            "checkpoint '" << path_ << "': reading a slice of " << object_path
                           << " failed (checksum mismatch, truncated or corrupt file)");
}

void H5File::set_attr(const std::string& object_path, const std::string& name, const std::string& value) {
  Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, H5T_VARIABLE);
  H5Tset_cset(type.id, H5T_CSET_UTF8);
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle attr{H5Acreate_by_name(id_, object_path.c_str(), name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT,
                                H5P_DEFAULT),
              H5Aclose};
  const char* p = value.c_str();
  MOE_CHECK(attr.id >= 0 && H5Awrite(attr.id, type.id, &p) >= 0,
            "checkpoint '" << path_ << "': cannot write attribute " << object_path << "@" << name);
}

void H5File::set_attr(const std::string& object_path, const std::string& name, int64_t value) {
  Handle space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle attr{H5Acreate_by_name(id_, object_path.c_str(), name.c_str(), H5T_STD_I64LE, space.id, H5P_DEFAULT,
                                H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose};
  MOE_CHECK(attr.id >= 0 && H5Awrite(attr.id, H5T_NATIVE_INT64, &value) >= 0,
            "checkpoint '" << path_ << "': cannot write attribute " << object_path << "@" << name);
}

std::optional<std::string> H5File::get_string_attr(const std::string& object_path, const std::string& name) const {
  if (!exists(object_path) || H5Aexists_by_name(id_, object_path.c_str(), name.c_str(), H5P_DEFAULT) <= 0)
    return std::nullopt;
  Handle attr{H5Aopen_by_name(id_, object_path.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  Handle ftype{H5Aget_type(attr.id), H5Tclose};
  if (H5Tget_class(ftype.id) != H5T_STRING) return std::nullopt;
  if (H5Tis_variable_str(ftype.id) > 0) {
    Handle mtype{H5Tcopy(H5T_C_S1), H5Tclose};
    H5Tset_size(mtype.id, H5T_VARIABLE);
    H5Tset_cset(mtype.id, H5Tget_cset(ftype.id));
    char* p = nullptr;
    if (H5Aread(attr.id, mtype.id, &p) < 0 || p == nullptr) return std::nullopt;
    std::string out(p);
    H5free_memory(p);
    return out;
  }
  size_t size = H5Tget_size(ftype.id);
  std::string buf(size, '\0');
  Handle mtype{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(mtype.id, size);
  if (H5Aread(attr.id, mtype.id, buf.data()) < 0) return std::nullopt;
  auto end = buf.find('\0');
  return end == std::string::npos ? buf : buf.substr(0, end);
}

std::optional<int64_t> H5File::get_int_attr(const std::string& object_path, const std::string& name) const {
  if (!exists(object_path) || H5Aexists_by_name(id_, object_path.c_str(), name.c_str(), H5P_DEFAULT) <= 0)
    return std::nullopt;
  Handle attr{H5Aopen_by_name(id_, object_path.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  Handle ftype{H5Aget_type(attr.id), H5Tclose};
  if (H5Tget_class(ftype.id) != H5T_INTEGER) return std::nullopt;
  int64_t v = 0;
  if (H5Aread(attr.id, H5T_NATIVE_INT64, &v) < 0) return std::nullopt;
  return v;
}

}  // namespace moe
