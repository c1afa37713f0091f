// Model FLOPs for MFU, and the machine's fp32 GEMM peak measured with the same GEMM the model uses.
#pragma once
#include "core/config.h"

namespace moe {

// Training FLOPs per token: 6 x matmul parameters active per token (top-k experts, shared experts,
// LM head) + 12 x n_layers x seq_len x (n_heads x head_dim) for attention scores and values
// (the PaLM / Megatron convention, counting the full score matrix).
double training_flops_per_token(const ModelConfig& model, int seq_len, double active_matmul_params);

// Best sustained GFLOP/s of square sgemm (n = 2048) over a few repetitions, all threads.
double measure_gemm_peak_gflops(double seconds = 1.0);

}  // namespace moe
