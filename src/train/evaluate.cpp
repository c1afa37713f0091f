// Validation loss.
#include "train/evaluate.h"

#include <vector>

namespace moe {

double evaluate(Transformer& model, const TokenFile& valid, const Config& cfg, Communicator& dp) {
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  const int64_t batches = int64_t(cfg.train.eval_batches) * cfg.train.global_batch / B;  // a multiple of dp
  std::vector<int32_t> tokens(B * S), targets(B * S);
  double sum = 0;
  for (int64_t b = dp.rank(); b < batches; b += dp.size()) {
    for (int64_t i = 0; i < B; ++i)
      valid.read_sample((b * B + i) % valid.num_samples(), tokens.data() + i * S, targets.data() + i * S);
    sum += model.forward_backward(tokens.data(), targets.data(), B, S, /*training=*/false, 0.0f).ce;
  }
  dp.all_reduce_sum(&sum, 1);
  return sum / double(batches);
}

}  // namespace moe
