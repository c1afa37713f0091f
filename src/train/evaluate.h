// Validation loss: the mean cross-entropy over the first eval_batches x global_batch samples of
// the validation file, in file order (wrapping around a short file), forward only. Collective over
// the dp group: rank r evaluates micro-batches r, r + dp, ... and the sums are reduced.
#pragma once
#include "core/config.h"
#include "data/token_file.h"
#include "model/transformer.h"
#include "parallel/communicator.h"

namespace moe {

double evaluate(Transformer& model, const TokenFile& valid, const Config& cfg, Communicator& dp);

}  // namespace moe
