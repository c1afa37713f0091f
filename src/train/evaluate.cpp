// Validation loss.
#include "train/evaluate.h"

#include <vector>

namespace moe {

double evaluate(Transformer& model, const TokenFile& valid, const Config& cfg) {
  const int64_t B = cfg.train.micro_batch, S = cfg.train.seq_len;
  const int64_t total = int64_t(cfg.train.eval_batches) * cfg.train.global_batch;
  std::vector<int32_t> tokens(B * S), targets(B * S);
  double sum = 0;
  int64_t batches = 0;
  for (int64_t first = 0; first < total; first += B) {
    for (int64_t i = 0; i < B; ++i)
      valid.read_sample((first + i) % valid.num_samples(), tokens.data() + i * S, targets.data() + i * S);
    sum += model.forward_backward(tokens.data(), targets.data(), B, S, /*training=*/false, 0.0f).ce;
    ++batches;
  }
  return sum / double(batches);
}

}  // namespace moe
