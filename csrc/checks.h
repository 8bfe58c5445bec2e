#pragma once
// Argument checks shared by the CPU and CUDA kernels. TORCH_CHECK raises RuntimeError in Python;
// every message names the argument and what was expected.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <array>
#include <utility>
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

// node_sum entry kinds; the codes are goldnas_fast.ops.Kind.
enum NodeKind : int64_t { kIdentity = 0, kAvgPool3x3 = 1, kMaxPool3x3 = 2, kNumKinds = 3 };

inline void check_node_entries(const char* op, at::TensorList inputs, c10::IntArrayRef sources,
                               c10::IntArrayRef kinds, c10::IntArrayRef gates, const at::Tensor& weights) {
  check_same_tensors(op, "inputs", inputs);
  const int64_t E = static_cast<int64_t>(sources.size());
  TORCH_CHECK(E >= 1, op, ": sources must hold at least one entry, got none");
  TORCH_CHECK(static_cast<int64_t>(kinds.size()) == E, op, ": kinds has ", kinds.size(),
              " entries but sources has ", E);
  TORCH_CHECK(static_cast<int64_t>(gates.size()) == E, op, ": gates has ", gates.size(),
              " entries but sources has ", E);
  check_weights(op, weights, 0, inputs[0]);
  const int64_t U = static_cast<int64_t>(inputs.size());
  bool pooling = false;
  for (int64_t e = 0; e < E; ++e) {
    TORCH_CHECK(sources[e] >= 0 && sources[e] < U, op, ": sources[", e, "] = ", sources[e],
                " is out of range for ", U, " inputs");
    TORCH_CHECK(kinds[e] >= 0 && kinds[e] < kNumKinds, op, ": kinds[", e, "] = ", kinds[e],
                " is not a goldnas_fast.ops.Kind (expected 0 identity, 1 avg_pool_3x3, 2 max_pool_3x3)");
    TORCH_CHECK(gates[e] >= 0 && gates[e] < weights.size(0), op, ": gates[", e, "] = ", gates[e],
                " is out of range for weights with ", weights.size(0), " entries");
    pooling = pooling || kinds[e] != kIdentity;
  }
  TORCH_CHECK(!pooling || inputs[0].dim() == 4, op, ": pooling kinds need 4-D (N, C, H, W) inputs, got shape ",
              inputs[0].sizes());
}

// The entries of a node grouped into terms (input u, kind k): gates[u][k] lists, in entry order, the
// gates of every entry that applies kind k to input u. Entries that share a term share one operator
// evaluation (coefficient = sum of their gates) and one dot product for the gate gradient.
struct NodeTerms {
  std::vector<std::array<std::vector<int64_t>, kNumKinds>> gates;
  bool pooling = false;

  bool used(size_t u) const {
    return !gates[u][kIdentity].empty() || !gates[u][kAvgPool3x3].empty() || !gates[u][kMaxPool3x3].empty();
  }
};

inline NodeTerms group_node_entries(int64_t num_inputs, c10::IntArrayRef sources, c10::IntArrayRef kinds,
                                    c10::IntArrayRef gates) {
  NodeTerms t;
  t.gates.resize(static_cast<size_t>(num_inputs));
  for (size_t e = 0; e < sources.size(); ++e) {
    t.gates[sources[e]][kinds[e]].push_back(gates[e]);
    t.pooling = t.pooling || kinds[e] != kIdentity;
  }
  return t;
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
  TORCH_CHECK(grad_out.sizes() == inputs[0].sizes() && grad_out.scalar_type() == inputs[0].scalar_type(), op,
              ": grad_out must match inputs[0] in shape and dtype");
  TORCH_CHECK(grad_out.device() == inputs[0].device(), op, ": grad_out is on ", grad_out.device(),
              " but the inputs are on ", inputs[0].device());
  std::vector<at::Tensor> all(inputs.begin(), inputs.end());
  all.push_back(grad_out);
  all = layout(all);
  BackwardBuffers b;
  b.grad = all.back();
  all.pop_back();
  b.inputs = std::move(all);
  if (need_inputs_grad) {
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
inline BackwardBuffers node_sum_backward_buffers(const at::Tensor& grad_out, at::TensorList inputs,
                                                 const at::Tensor& weights, bool need_inputs_grad,
                                                 const NodeTerms& terms) {
  return backward_buffers(
      "node_sum_backward", grad_out, inputs, weights, need_inputs_grad,
      [&](at::TensorList t) { return node_layout(t, terms.pooling); },
      [&](const at::Tensor& g) { return empty_node_like(g, terms.pooling); }, [&](size_t u) { return !terms.used(u); });
}

}  // namespace goldnas

