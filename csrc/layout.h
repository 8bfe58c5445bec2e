#pragma once
// Memory layouts of the fused ops' inputs and results, and the buffers every fused backward starts from.
// goldnas_fast/ops/_layout.py mirrors the output layouts for the fake (meta) registrations.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/util/ArrayRef.h>

#include <utility>
#include <vector>

#include "checks.h"
#include "node_terms.h"

namespace goldnas {

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

// Pooling walks planes of H x W pixels: NCHW-contiguous tensors one channel per plane, channels_last ones
// all channels interleaved. The first tensor picks the layout (channels_last when it is channels_last-
// but not NCHW-contiguous), the others follow it (a copy where they differ). Identity-only nodes take
// any shared dense layout as a flat array.
inline at::MemoryFormat pooling_format(const at::Tensor& first) {
  return first.is_contiguous(at::MemoryFormat::ChannelsLast) && !first.is_contiguous() ? at::MemoryFormat::ChannelsLast
                                                                                        : at::MemoryFormat::Contiguous;
}

inline std::vector<at::Tensor> node_layout(at::TensorList tensors, bool pooling) {
  if (!pooling) return dense_same_layout(tensors);
  const at::MemoryFormat format = pooling_format(tensors[0]);
  std::vector<at::Tensor> out;
  out.reserve(tensors.size());
  for (const auto& t : tensors) out.push_back(t.contiguous(format));
  return out;
}

// An output (or input gradient) for tensors laid out by dense_same_layout or node_layout, with the strides
// that goldnas_fast/ops/_layout.py gives the fake tensors: a contiguous tensor may carry odd strides on
// size-1 or empty dimensions (contiguous() keeps them), so contiguous and pooling results get the canonical
// strides of their memory format, other dense layouts the strides of `like`.
inline at::Tensor empty_like_layout(const at::Tensor& like) {
  if (like.is_contiguous()) return at::empty(like.sizes(), like.options());
  return at::empty_strided(like.sizes(), like.strides(), like.options());
}

inline at::Tensor empty_node_like(const at::Tensor& like, bool pooling) {
  if (pooling) return at::empty(like.sizes(), like.options().memory_format(pooling_format(like)));
  return empty_like_layout(like);
}

// The gate vector in the kernels' accumulation type acc_t, contiguous: the tensor itself when it already
// is (the usual case: no conversion kernel, no allocation).
template <typename acc_t>
at::Tensor weights_as(const at::Tensor& weights) {
  constexpr at::ScalarType type = c10::CppTypeToScalarType<acc_t>::value;
  if (weights.scalar_type() == type && weights.is_contiguous()) return weights;
  return weights.to(type).contiguous();
}

// What every fused backward starts from: the output gradient and the inputs in one layout (`layout`),
// an input gradient per input allocated like the gradient (`alloc`; zeroed where `untouched(u)` says the kernel
// writes nothing), and the gate gradient. With an empty gradient the gate gradient is already zero and
// nothing is left to compute.
struct BackwardBuffers {
  at::Tensor grad;
  std::vector<at::Tensor> inputs;
  std::vector<at::Tensor> grad_inputs;
  at::Tensor grad_weights;
};

template <typename Layout, typename Alloc, typename Untouched>
BackwardBuffers backward_buffers(const char* op, const at::Tensor& grad_out, at::TensorList inputs,
                                 const at::Tensor& weights, bool need_inputs_grad, Layout layout, Alloc alloc,
                                 Untouched untouched) {
  check_grad_out(op, grad_out, inputs[0]);
  std::vector<at::Tensor> all;
  all.reserve(inputs.size() + 1);
  all.insert(all.end(), inputs.begin(), inputs.end());
  all.push_back(grad_out);
  all = layout(all);
  BackwardBuffers b;
  b.grad = std::move(all.back());
  all.pop_back();
  b.inputs = std::move(all);
  if (need_inputs_grad) {
    b.grad_inputs.reserve(b.inputs.size());
    for (size_t u = 0; u < b.inputs.size(); ++u) {
      at::Tensor gx = alloc(b.grad);
      if (untouched(u)) gx.zero_();
      b.grad_inputs.push_back(std::move(gx));
    }
  }
  b.grad_weights = at::empty({weights.size(0)}, weights.options());
  if (b.grad.numel() == 0) b.grad_weights.zero_();
  return b;
}

// Stores gate-gradient sums computed on the host (CPU kernels) into grad_w, converting to its dtype.
inline void store_host_sums(const std::vector<double>& sums, at::Tensor& grad_w) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad_w.scalar_type(), "store_host_sums", [&] {
    scalar_t* p = grad_w.mutable_data_ptr<scalar_t>();
    for (size_t k = 0; k < sums.size(); ++k) p[k] = static_cast<scalar_t>(sums[k]);
  });
}

// mixed_sum's backward works on one shared dense layout and writes every input gradient.
inline BackwardBuffers mixed_sum_backward_buffers(const at::Tensor& grad_out, at::TensorList inputs,
                                                  const at::Tensor& weights, bool need_inputs_grad) {
  return backward_buffers(
      "mixed_sum_backward", grad_out, inputs, weights, need_inputs_grad,
      [](at::TensorList t) { return dense_same_layout(t); },
      [](const at::Tensor& g) { return empty_like_layout(g); },
      [](size_t) { return false; });
}

// node_sum's kernel writes every element of a used input's gradient; an unused input's stays zero.
inline BackwardBuffers node_sum_backward_buffers(const char* op, const at::Tensor& grad_out, at::TensorList inputs,
                                                 const at::Tensor& weights, bool need_inputs_grad,
                                                 const NodeTerms& terms) {
  return backward_buffers(
      op, grad_out, inputs, weights, need_inputs_grad,
      [&](at::TensorList t) { return node_layout(t, terms.pooling); },
      [&](const at::Tensor& g) { return empty_node_like(g, terms.pooling); }, [&](size_t u) { return !terms.used(u); });
}

}  // namespace goldnas
