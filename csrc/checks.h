#pragma once
// Argument checks shared by the CPU and CUDA kernels. TORCH_CHECK raises RuntimeError in Python;
// every message names the argument and what was expected.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <vector>

namespace goldnas {

inline void check_same_tensors(const char* op, const char* name, at::TensorList tensors) {
  TORCH_CHECK(!tensors.empty(), op, ": ", name, " must hold at least one tensor, got none");
  const at::Tensor& first = tensors[0];
  TORCH_CHECK(at::isFloatingType(first.scalar_type()), op, ": ", name,
              "[0] must be a floating-point tensor, got ", first.scalar_type());
  for (size_t k = 1; k < tensors.size(); ++k) {
    const at::Tensor& t = tensors[k];
    TORCH_CHECK(t.sizes() == first.sizes(), op, ": ", name, "[", k, "] has shape ", t.sizes(),
                " but ", name, "[0] has shape ", first.sizes());
    TORCH_CHECK(t.scalar_type() == first.scalar_type(), op, ": ", name, "[", k, "] has dtype ",
                t.scalar_type(), " but ", name, "[0] has dtype ", first.scalar_type());
    TORCH_CHECK(t.device() == first.device(), op, ": ", name, "[", k, "] is on ", t.device(), " but ",
                name, "[0] is on ", first.device());
  }
}

inline void check_weights(const char* op, const at::Tensor& weights, int64_t min_len, const at::Tensor& like) {
  TORCH_CHECK(weights.dim() == 1, op, ": weights must be 1-D, got shape ", weights.sizes());
  TORCH_CHECK(at::isFloatingType(weights.scalar_type()), op, ": weights must be floating-point, got ",
              weights.scalar_type());
  TORCH_CHECK(weights.size(0) >= min_len, op, ": weights has ", weights.size(0), " entries, expected ",
              min_len);
  TORCH_CHECK(weights.device() == like.device(), op, ": weights is on ", weights.device(),
              " but the tensors are on ", like.device());
}

// All tensors laid out identically and densely: then kernels can walk the storage directly, which
// keeps channels_last inputs copy-free. Otherwise they are made contiguous (a copy of strided ones).
inline std::vector<at::Tensor> dense_same_layout(at::TensorList tensors) {
  bool same = tensors[0].is_non_overlapping_and_dense();
  for (size_t k = 1; same && k < tensors.size(); ++k) {
    same = tensors[k].strides() == tensors[0].strides();
  }
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) {
    out.push_back(same ? t : t.contiguous());
  }
  return out;
}

}  // namespace goldnas
