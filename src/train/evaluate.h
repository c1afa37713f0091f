// Validation loss: the mean cross-entropy over the first eval_batches x global_batch samples of
// the validation file, in file order (wrapping around a short file), forward only.
#pragma once
#include "core/config.h"
#include "data/token_file.h"
#include "model/transformer.h"

namespace moe {

double evaluate(Transformer& model, const TokenFile& valid, const Config& cfg);

}  // namespace moe
