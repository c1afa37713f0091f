// An independent, plain-loop, double-precision implementation of the forward pass and loss of
// SPEC section 1, written straight from the SPEC text (no kernels/ code), to check the model against.
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.h"
#include "model/params.h"

namespace moe::test {

struct ReferenceLoss {
  double ce = 0, aux = 0;
};

// State carried across micro-batches of one optimizer step for lbl_scope: global.
struct ReferenceStepState {
  std::vector<std::vector<double>> counts;  // per layer, per expert
  std::vector<double> tokens;               // per layer
};

ReferenceLoss reference_forward(const Config& cfg, ParamStore& params, const std::vector<int32_t>& tokens,
                                const std::vector<int32_t>& targets, int64_t B, int64_t S, ReferenceStepState& state);

}  // namespace moe::test
