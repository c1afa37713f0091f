// HDF5 helpers.
#include "train/hdf5_io.h"

#include <algorithm>

#include "core/error.h"

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

void H5File::write_floats_slice(const std::string& object_path, const std::vector<int64_t>& full_shape, int dim,
                                int64_t offset, const std::vector<int64_t>& local_shape, const float* data,
                                bool active) {
  std::vector<hsize_t> dims(full_shape.begin(), full_shape.end());
  Handle space{H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose};
  Handle lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Handle dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  // Chunk = the whole tensor capped near 4 MiB (leading dimension cut), so Fletcher32 covers it.
  int64_t n = 1;
  for (auto d : full_shape) n *= d;
  if (n > 0 && !dims.empty()) {
    std::vector<hsize_t> chunk(dims);
    int64_t inner = n / full_shape[0];
    chunk[0] = hsize_t(std::max<int64_t>(1, std::min<int64_t>(full_shape[0], (1 << 20) / std::max<int64_t>(1, inner))));
    H5Pset_chunk(dcpl.id, int(chunk.size()), chunk.data());
    H5Pset_fletcher32(dcpl.id);
  }
  Handle dset{H5Dcreate2(id_, object_path.c_str(), H5T_IEEE_F32LE, space.id, lcpl.id, dcpl.id, H5P_DEFAULT),
              H5Dclose};
  MOE_CHECK(dset.id >= 0, "checkpoint '" << path_ << "': cannot create dataset " << object_path);
  if (n == 0) return;
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

void H5File::read_floats(const std::string& object_path, float* data) const {
  Handle dset{H5Dopen2(id_, object_path.c_str(), H5P_DEFAULT), H5Dclose};
  MOE_CHECK(dset.id >= 0, "checkpoint '" << path_ << "': dataset " << object_path << " is missing");
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
