#pragma once
// node_sum's CUDA kernels, element by element: how a node is packed into launches and what one thread
// computes for one element. The CUDA kernels (csrc/cuda/node_sum_cuda.cu) loop these functions over a
// grid; the test-only CPU op _node_sum_emulate_cuda (csrc/cpu/node_sum_emulate_cuda.cpp) loops the very
// same functions over the elements on the host, so their index arithmetic is tested without a GPU.
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "node_terms.h"
#include "pool_index.h"

namespace goldnas {

constexpr int kSlots = 8;                   // distinct inputs per launch
constexpr int kTerms = kSlots * kNumKinds;  // (slot, kind) terms per launch, j = slot * 3 + kind
constexpr int kRefs = 64;                   // gate references per launch

// One launch's share of the node, passed by value as a kernel argument: no device index buffers, no
// host-device synchronisation. Nodes with more inputs or entries take several launches.
template <typename scalar_t>
struct Launch {
  const scalar_t* x[kSlots];
  scalar_t* gx[kSlots];        // backward: gradient of the slot's input, nullptr when not wanted
  int32_t gate[kRefs];         // term j's gates are gate[begin[j] .. begin[j + 1])
  int16_t begin[kTerms + 1];
  int16_t column[kTerms];      // term j's dot product column, relative to column_base; -1: no such term
  bool accumulate[kSlots];     // backward: an earlier launch already wrote part of this input's gradient
  int32_t slots;
  int32_t column_base;
  bool any_avg;
};

// Term j's coefficient: the sum of its gate values, in entry order.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE acc_t term_coefficient(const Launch<scalar_t>& L, const acc_t* __restrict__ w, int j) {
  acc_t c = 0;
  for (int r = L.begin[j]; r < L.begin[j + 1]; ++r) c += w[L.gate[r]];
  return c;
}

// Forward at element i: a (the running sum of earlier launches, or 0) plus this launch's terms.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE acc_t forward_element(const Launch<scalar_t>& L, const acc_t* coef, const PlaneGeometry& geo,
                                      int64_t i, acc_t a) {
  int h, w;
  plane_position(i, geo, h, w);
  GOLDNAS_UNROLL
  for (int s = 0; s < kSlots; ++s) {
    if (s >= L.slots) break;
    const scalar_t* __restrict__ x = L.x[s];
    if (L.column[s * 3 + kIdentity] >= 0) a += coef[s * 3 + kIdentity] * static_cast<acc_t>(x[i]);
    if (L.column[s * 3 + kAvgPool3x3] >= 0) a += coef[s * 3 + kAvgPool3x3] * avg3<scalar_t, acc_t>(x, i, h, w, geo);
    if (L.column[s * 3 + kMaxPool3x3] >= 0) {
      int arg;
      a += coef[s * 3 + kMaxPool3x3] * max3<scalar_t, acc_t>(x, i, h, w, geo, arg);
    }
  }
  return a;
}

// Backward at element i for this launch's inputs, in gather form (no atomics): writes (or, where an
// earlier launch started it, adds to) each wanted input gradient at i and adds each term's <kind(x), g>
// share at i to dot[j]. Input gradients: identity g[i]; average pool avg3_adjoint; max pool max3_adjoint.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE void backward_element(const Launch<scalar_t>& L, const acc_t* coef, const PlaneGeometry& geo,
                                      const scalar_t* __restrict__ g, int64_t i, acc_t* dot) {
  int h, w;
  plane_position(i, geo, h, w);
  const acc_t gi = static_cast<acc_t>(g[i]);
  // The adjoint of the average pool at i is the same for all inputs.
  const acc_t g_avg = L.any_avg ? avg3_adjoint<scalar_t, acc_t>(g, i, h, w, geo) : acc_t(0);
  GOLDNAS_UNROLL
  for (int s = 0; s < kSlots; ++s) {
    if (s >= L.slots) break;
    const scalar_t* __restrict__ x = L.x[s];
    acc_t gx = 0;
    if (L.column[s * 3 + kIdentity] >= 0) {
      dot[s * 3 + kIdentity] += static_cast<acc_t>(x[i]) * gi;
      gx += coef[s * 3 + kIdentity] * gi;
    }
    if (L.column[s * 3 + kAvgPool3x3] >= 0) {
      dot[s * 3 + kAvgPool3x3] += avg3<scalar_t, acc_t>(x, i, h, w, geo) * gi;
      gx += coef[s * 3 + kAvgPool3x3] * g_avg;
    }
    if (L.column[s * 3 + kMaxPool3x3] >= 0) {
      int arg;
      dot[s * 3 + kMaxPool3x3] += max3<scalar_t, acc_t>(x, i, h, w, geo, arg) * gi;
      gx += coef[s * 3 + kMaxPool3x3] * max3_adjoint<scalar_t, acc_t>(x, g, i, h, w, geo);
    }
    scalar_t* __restrict__ gxp = L.gx[s];
    if (gxp != nullptr) gxp[i] = static_cast<scalar_t>(L.accumulate[s] ? static_cast<acc_t>(gxp[i]) + gx : gx);
  }
}

// Adds each term's total dot product (totals[column_base + column[j]]) to each of its gates, in a fixed
// order: deterministic even where entries share a gate.
template <typename scalar_t, typename acc_t>
GOLDNAS_HOST_DEVICE GOLDNAS_FORCEINLINE void scatter_gates(const Launch<scalar_t>& L, const acc_t* __restrict__ totals,
                                   acc_t* __restrict__ grad_w) {
  for (int j = 0; j < kTerms; ++j) {
    if (L.column[j] < 0) continue;
    const acc_t t = totals[L.column_base + L.column[j]];
    for (int r = L.begin[j]; r < L.begin[j + 1]; ++r) grad_w[L.gate[r]] += t;
  }
}

// Packs the terms into launches of at most kSlots inputs and kRefs gate references, input by input and
// kind by kind, so each launch's gates are ordered by term. An input split across two launches (only
// with more than kRefs entries) accumulates its gradient in the second. `columns` gets the number of
// dot products over all launches.
template <typename scalar_t>
std::vector<Launch<scalar_t>> plan_launches(const NodeTerms& terms, const std::vector<at::Tensor>& xs,
                                            const std::vector<at::Tensor>& grad_xs, int64_t& columns) {
  std::vector<Launch<scalar_t>> launches;
  Launch<scalar_t> cur{};
  int refs = 0;
  int count[kTerms] = {};
  int64_t slot_input = -1;
  columns = 0;
  auto close = [&] {
    cur.begin[0] = 0;
    int local = 0;
    for (int j = 0; j < kTerms; ++j) {
      cur.begin[j + 1] = static_cast<int16_t>(cur.begin[j] + count[j]);
      cur.column[j] = static_cast<int16_t>(count[j] > 0 ? local++ : -1);
      cur.any_avg = cur.any_avg || (j % kNumKinds == kAvgPool3x3 && count[j] > 0);
    }
    cur.column_base = static_cast<int32_t>(columns);
    columns += local;
    launches.push_back(cur);
    cur = Launch<scalar_t>{};
    refs = 0;
    std::fill(count, count + kTerms, 0);
    slot_input = -1;
  };
  std::vector<bool> started(xs.size(), false);
  for (size_t u = 0; u < xs.size(); ++u) {
    for (int k = 0; k < kNumKinds; ++k) {
      for (int64_t gate : terms.gates[u][k]) {
        bool new_slot = slot_input != static_cast<int64_t>(u);
        if (refs == kRefs || (new_slot && cur.slots == kSlots)) {
          close();
          new_slot = true;
        }
        if (new_slot) {
          const int s = cur.slots++;
          cur.x[s] = xs[u].const_data_ptr<scalar_t>();
          cur.gx[s] = grad_xs.empty() ? nullptr : grad_xs[u].mutable_data_ptr<scalar_t>();
          cur.accumulate[s] = started[u];
          started[u] = true;
          slot_input = static_cast<int64_t>(u);
        }
        cur.gate[refs++] = static_cast<int32_t>(gate);
        ++count[(cur.slots - 1) * kNumKinds + k];
      }
    }
  }
  if (cur.slots > 0) close();
  return launches;
}

// The plane geometry of tensors laid out by node_layout: NCHW-contiguous, or channels_last-contiguous when
// not NCHW (pooling); a flat array otherwise.
inline PlaneGeometry node_geometry(const char* op, const at::Tensor& x, bool pooling) {
  PlaneGeometry g{x.numel(), 1, 1, 1};
  if (pooling) {
    const int64_t C = x.is_contiguous() ? 1 : x.size(1);
    // Window offsets are int: two rows of a plane must fit.
    TORCH_CHECK_VALUE(x.size(2) < (int64_t{1} << 30) && 2 * (x.size(3) + 1) * C < (int64_t{1} << 30), op,
                      ": spatial size ", x.sizes(), " is too large");
    g.H = static_cast<int32_t>(x.size(2));
    g.W = static_cast<int32_t>(x.size(3));
    g.C = static_cast<int32_t>(C);
  }
  return g;
}

}  // namespace goldnas
