// Validation loss.
#include "train/evaluate.h"

#include <vector>

namespace moe {

double evaluate(const MicroBatchCe& ce, const TokenFile& valid, const Config& cfg, Communicator& dp) {
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  const int64_t batches = int64_t(cfg.train.eval_batches) * cfg.train.global_batch / B;  // a multiple of dp
  std::vector<int32_t> tokens(B * S), targets(B * S);
  double sum = 0;
  for (int64_t b = dp.rank(); b < batches; b += dp.size()) {
    for (int64_t i = 0; i < B; ++i)
      valid.read_sample((b * B + i) % valid.num_samples(), tokens.data() + i * S, targets.data() + i * S);
    sum += ce(tokens.data(), targets.data(), B, S);
  }
  dp.all_reduce_sum(&sum, 1);
  return sum / double(batches);
}

double evaluate(Transformer& model, const TokenFile& valid, const Config& cfg, Communicator& dp) {
  return evaluate(
      [&](const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S) {
        return model.forward_backward(tokens, targets, B, S, /*training=*/false, 0.0f).ce;
      },
      valid, cfg, dp);
}

}  // namespace moe
