// The moe-ckpt subcommands: inspect, verify and compare checkpoints (SPEC section 4 files written
// by any layout). Each prints to stdout and returns the process exit status.
#pragma once
#include <string>

namespace moe {

// Step, tokens, format, the resolved config, and every tensor with its shape and size. 0, or 2 on error.
int ckpt_info(const std::string& path);
// Reads every tensor (Fletcher32 checksums checked) and compares every name and shape with the model
// the stored config describes. 0 when the file is sound, 1 with the first problem named.
int ckpt_verify(const std::string& path);
// Max absolute and relative difference per tensor present in either file. 0 when every tensor is in
// both with the same shape and within atol + rtol * |b|, 1 otherwise, 2 on an unreadable file.
int ckpt_diff(const std::string& a, const std::string& b, double atol, double rtol);

// Sequential write speed of the disk under dir (512 MB in 4 MB blocks, fsync), then a synchronous
// checkpoint of the model `config_path` describes, written and read back into dir; prints the
// bandwidths and the ratio to the disk's. 0, or 2 on error.
int ckpt_bench(const std::string& dir, const std::string& config_path);

}  // namespace moe
