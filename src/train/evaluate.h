// Validation loss: the mean cross-entropy over the first eval_batches x global_batch samples of
// the validation file, in file order (wrapping around a short file), forward only. Collective over
// the dp group: rank r evaluates micro-batches r, r + dp, ... and the sums are reduced.
#pragma once
#include <functional>

#include "core/config.h"
#include "data/token_file.h"
#include "model/transformer.h"
#include "parallel/communicator.h"

namespace moe {

// The cross-entropy of one micro-batch (tokens, targets [B * S]) by some model.
using MicroBatchCe = std::function<double(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t S)>;

double evaluate(const MicroBatchCe& ce, const TokenFile& valid, const Config& cfg, Communicator& dp);
double evaluate(Transformer& model, const TokenFile& valid, const Config& cfg, Communicator& dp);  // forward only

}  // namespace moe
