#pragma once
// Argument checks shared by the CPU and CUDA kernels. TORCH_CHECK_VALUE raises ValueError in Python, so the
// public wrappers need no copy of these checks; every message names the argument and what was expected.
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include "node_terms.h"

namespace goldnas {

inline void check_same_tensors(const char* op, const char* name, at::TensorList tensors) {
  TORCH_CHECK_VALUE(!tensors.empty(), op, ": ", name, " must hold at least one tensor, got none");
  const at::Tensor& first = tensors[0];
  TORCH_CHECK_VALUE(at::isFloatingType(first.scalar_type()), op, ": ", name,
                    " must be floating-point tensors, got ", first.scalar_type());
  for (size_t k = 1; k < tensors.size(); ++k) {
    const at::Tensor& t = tensors[k];
    TORCH_CHECK_VALUE(t.sizes() == first.sizes(), op, ": ", name, "[", k, "] has shape ", t.sizes(), " but ", name,
                      "[0] has shape ", first.sizes());
    TORCH_CHECK_VALUE(t.scalar_type() == first.scalar_type(), op, ": ", name, "[", k, "] has dtype ",
                      t.scalar_type(), " but ", name, "[0] has dtype ", first.scalar_type());
    TORCH_CHECK_VALUE(t.device() == first.device(), op, ": ", name, "[", k, "] is on ", t.device(), " but ", name,
                      "[0] is on ", first.device());
  }
}

inline void check_weights(const char* op, const at::Tensor& weights, const at::Tensor& like) {
  TORCH_CHECK_VALUE(weights.dim() == 1, op, ": weights must be 1-D, got shape ", weights.sizes());
  TORCH_CHECK_VALUE(at::isFloatingType(weights.scalar_type()), op, ": weights must be floating-point, got ",
                    weights.scalar_type());
  TORCH_CHECK_VALUE(weights.device() == like.device(), op, ": weights is on ", weights.device(),
                    " but the tensors are on ", like.device());
}

// mixed_sum and mixed_sum_backward: K >= 1 tensors of one shape, dtype and device, K weights beside them.
inline void check_mixed_sum_args(const char* op, at::TensorList inputs, const at::Tensor& weights) {
  check_same_tensors(op, "inputs", inputs);
  check_weights(op, weights, inputs[0]);
  TORCH_CHECK_VALUE(weights.size(0) == static_cast<int64_t>(inputs.size()), op, ": weights has ", weights.size(0),
                    " entries, expected ", inputs.size(), " (one per input)");
}

// node_sum and node_sum_backward: E >= 1 entries (sources[e], kinds[e], gates[e]) over the distinct inputs.
inline void check_node_entries(const char* op, at::TensorList inputs, c10::IntArrayRef sources,
                               c10::IntArrayRef kinds, c10::IntArrayRef gates, const at::Tensor& weights) {
  check_same_tensors(op, "inputs", inputs);
  const int64_t E = static_cast<int64_t>(sources.size());
  TORCH_CHECK_VALUE(E >= 1, op, ": sources must hold at least one entry, got none");
  TORCH_CHECK_VALUE(static_cast<int64_t>(kinds.size()) == E, op, ": kinds has ", kinds.size(),
                    " entries but sources has ", E);
  TORCH_CHECK_VALUE(static_cast<int64_t>(gates.size()) == E, op, ": gates has ", gates.size(),
                    " entries but sources has ", E);
  check_weights(op, weights, inputs[0]);
  const int64_t U = static_cast<int64_t>(inputs.size());
  bool pooling = false;
  for (int64_t e = 0; e < E; ++e) {
    TORCH_CHECK_VALUE(sources[e] >= 0 && sources[e] < U, op, ": sources[", e, "] = ", sources[e],
                      " is out of range for ", U, " inputs");
    TORCH_CHECK_VALUE(kinds[e] >= 0 && kinds[e] < kNumKinds, op, ": kinds[", e, "] = ", kinds[e],
                      " is not a goldnas_fast.ops.Kind (expected 0 identity, 1 avg_pool_3x3, 2 max_pool_3x3)");
    TORCH_CHECK_VALUE(gates[e] >= 0 && gates[e] < weights.size(0), op, ": gates[", e, "] = ", gates[e],
                      " is out of range for weights with ", weights.size(0), " entries");
    pooling = pooling || kinds[e] != kIdentity;
  }
  TORCH_CHECK_VALUE(!pooling || inputs[0].dim() == 4, op,
                    ": pooling kinds need 4-D (N, C, H, W) inputs, got shape ", inputs[0].sizes());
}

// The output gradient of a backward op: the shape, dtype and device of inputs[0].
inline void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& like) {
  TORCH_CHECK_VALUE(grad_out.sizes() == like.sizes() && grad_out.scalar_type() == like.scalar_type(), op,
                    ": grad_out must match inputs[0] in shape and dtype, got ", grad_out.sizes(), " ",
                    grad_out.scalar_type(), " for ", like.sizes(), " ", like.scalar_type());
  TORCH_CHECK_VALUE(grad_out.device() == like.device(), op, ": grad_out is on ", grad_out.device(),
                    " but the inputs are on ", like.device());
}

}  // namespace goldnas
