// Direct chunk I/O of checkpoints: our Fletcher32 against a plain transcription of HDF5's loop and
// against the bytes HDF5's own filter stores; files written directly read back through HDF5's
// pipeline (which verifies the checksum itself), and the reverse; corruption caught on both paths.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>

#include "test_util.h"
#include "train/fletcher32.h"
#include "train/hdf5_io.h"

namespace moe {
namespace fs = std::filesystem;

// HDF5's H5_checksum_fletcher32, word by word, as its documentation describes it.
static uint32_t reference_fletcher32(const unsigned char* data, size_t len) {
  size_t words = len / 2;
  uint32_t sum1 = 0, sum2 = 0;
  while (words) {
    size_t block = words > 360 ? 360 : words;
    words -= block;
    do {
      sum1 += (uint32_t(data[0]) << 8) | uint32_t(data[1]);
      data += 2;
      sum2 += sum1;
    } while (--block);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (len % 2) {
    sum1 += uint32_t(*data) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

TEST(Fletcher32, MatchesHdf5sLoopForEveryLengthPattern) {
  std::mt19937 gen(3);
  for (size_t len : {size_t(0), size_t(1), size_t(2), size_t(3), size_t(719), size_t(720), size_t(721),
                     size_t(1441), size_t(100000), size_t(4u << 20)}) {
    std::vector<unsigned char> random(len), ones(len, 0xFF);
    for (auto& b : random) b = static_cast<unsigned char>(gen());
    EXPECT_EQ(fletcher32(random.data(), len), reference_fletcher32(random.data(), len)) << "length " << len;
    // all-ones words push both sums to their largest values (the wrap-around case)
    EXPECT_EQ(fletcher32(ones.data(), len), reference_fletcher32(ones.data(), len)) << "length " << len;
  }
}

TEST(Fletcher32, AppendedChecksumIsWhatHdf5sFilterStores) {
  auto dir = test::temp_dir("fletcher_filter");
  const std::string path = dir + "/filtered.h5";
  std::vector<float> values = test::random_vector(3 * 1000, 9);
  hsize_t dims[2] = {3, 1000};
  {  // written through HDF5's own filter pipeline, no code of ours involved
    hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = H5Screate_simple(2, dims, nullptr);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, dims);
    H5Pset_fletcher32(dcpl);
    hid_t dset = H5Dcreate2(file, "x", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dset);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Fclose(file);
  }
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t dset = H5Dopen2(file, "x", H5P_DEFAULT);
  hsize_t origin[2] = {0, 0}, stored = 0;
  uint32_t mask = 1;
  ASSERT_GE(H5Dget_chunk_storage_size(dset, origin, &stored), 0);
  ASSERT_EQ(stored, values.size() * sizeof(float) + 4);
  std::vector<unsigned char> raw(stored), ours(stored);
  ASSERT_GE(H5Dread_chunk(dset, H5P_DEFAULT, origin, &mask, raw.data()), 0);
  EXPECT_EQ(mask, 0u);
  H5Dclose(dset);
  H5Fclose(file);
  std::memcpy(ours.data(), values.data(), values.size() * sizeof(float));
  EXPECT_EQ(append_fletcher32(ours.data(), values.size() * sizeof(float)), stored);
  EXPECT_EQ(ours, raw);
  EXPECT_TRUE(fletcher32_matches(raw.data(), raw.size()));
  raw[17] ^= 0x01;
  EXPECT_FALSE(fletcher32_matches(raw.data(), raw.size()));

  // and our reader takes that file (direct path) to the same values
  H5File f = H5File::open_read(path);
  std::vector<float> back(values.size());
  f.read_floats("/x", back.data());
  EXPECT_EQ(back, values);
}

// A tensor of several chunks with a partial last one: 2^20 floats per chunk, so 256 rows of 4096.
TEST(CheckpointChunks, DirectWritesReadBackThroughHdf5sPipelineAndCorruptionIsCaughtOnBothPaths) {
  auto dir = test::temp_dir("direct_chunks");
  const std::string path = dir + "/direct.h5";
  const std::vector<int64_t> shape = {600, 4096};  // chunks of 256 rows: 256 + 256 + 88
  std::vector<float> values = test::random_vector(600 * 4096, 4);
  {
    H5File f = H5File::create(path);
    f.write_floats("/model/w", shape, values.data());
    f.close();
  }
  {
    H5File f = H5File::open_read(path);
    std::vector<float> whole(values.size()), rows(values.size());
    f.read_floats("/model/w", whole.data());                       // direct, our checksum check
    f.read_floats_slice("/model/w", 0, 0, 600, rows.data());       // HDF5's filter checks it
    EXPECT_EQ(whole, values);
    EXPECT_EQ(rows, values);
    std::vector<float> cols(600 * 96);                              // a column slice crosses every chunk
    f.read_floats_slice("/model/w", 1, 4000, 96, cols.data());
    for (int r = 0; r < 600; ++r)
      for (int c = 0; c < 96; ++c) ASSERT_EQ(cols[r * 96 + c], values[r * 4096 + 4000 + c]);
  }
  // flip one byte in the middle of the second chunk's data
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(io)), std::istreambuf_iterator<char>());
    const char* needle = reinterpret_cast<const char*>(values.data() + 300 * 4096);
    auto at = std::search(bytes.begin(), bytes.end(), needle, needle + 64);
    ASSERT_NE(at, bytes.end());
    io.seekp(std::streamoff(at - bytes.begin() + 8));
    char c = char(*(at + 8) ^ 0x10);
    io.write(&c, 1);
  }
  H5File f = H5File::open_read(path);
  std::vector<float> out(values.size());
  for (auto read : {std::function<void()>([&] { f.read_floats("/model/w", out.data()); }),
                    std::function<void()>([&] { f.read_floats_slice("/model/w", 0, 256, 256, out.data()); })}) {
    auto msg = test::error_of(read);
    EXPECT_NE(msg.find("direct.h5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("checksum"), std::string::npos) << msg;
  }
}

}  // namespace moe
