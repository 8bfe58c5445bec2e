// CUDA kernels of goldnas::node_sum: out = sum_e w[gate_e] * kind_e(x[source_e]), with the 3x3 pooling
// kinds evaluated on the fly, and its one-pass backward.
#include <ATen/Dispatch.h>
#include <ATen/NumericUtils.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cuda/cuda_utils.cuh"

namespace goldnas {
namespace {

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

// When the node pools, elements form planes of H x W pixels with C interleaved channels: element
// (h, w, c) of a plane at (h * W + w) * C + c. NCHW-contiguous tensors have C = 1 (a plane per (n, c)),
// channels_last ones C = channels (a plane per image). Otherwise H = W = C = 1 (unused).
struct Geometry {
  int64_t n;
  int32_t H, W, C;
};

// Row and column of element i in its plane; 32-bit division where the size allows (64-bit division is
// emulated and slow on the GPU).
__device__ __forceinline__ void plane_position(int64_t i, const Geometry& geo, int& h, int& w) {
  if (geo.H == 1 && geo.W == 1) {
    h = w = 0;
  } else if (geo.n <= INT32_MAX) {
    const uint32_t j = geo.C == 1 ? static_cast<uint32_t>(i) : static_cast<uint32_t>(i) / static_cast<uint32_t>(geo.C);
    const uint32_t W = static_cast<uint32_t>(geo.W);
    w = static_cast<int>(j % W);
    h = static_cast<int>((j / W) % static_cast<uint32_t>(geo.H));
  } else {
    const int64_t j = i / geo.C;
    w = static_cast<int>(j % geo.W);
    h = static_cast<int>((j / geo.W) % geo.H);
  }
}

// Offset of the element (dh, dw) pixels away in the same channel.
__device__ __forceinline__ int pixel_offset(int dh, int dw, const Geometry& geo) {
  return (dh * geo.W + dw) * geo.C;
}

__device__ __forceinline__ int window_count(int h, int w, int H, int W) {
  return (min(h + 1, H - 1) - max(h - 1, 0) + 1) * (min(w + 1, W - 1) - max(w - 1, 0) + 1);
}

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t avg3(const scalar_t* __restrict__ x, int64_t i, int h, int w, const Geometry& geo) {
  const int h0 = max(h - 1, 0), h1 = min(h + 1, geo.H - 1), w0 = max(w - 1, 0), w1 = min(w + 1, geo.W - 1);
  acc_t s = 0;
  for (int ih = h0; ih <= h1; ++ih) {
    for (int iw = w0; iw <= w1; ++iw) s += static_cast<acc_t>(x[i + pixel_offset(ih - h, iw - w, geo)]);
  }
  return s / static_cast<acc_t>((h1 - h0 + 1) * (w1 - w0 + 1));
}

// Max over the 3x3 window at i, and in arg the offset of its position from i, with PyTorch's rule (the
// CPU kernel uses the same): scan the window in row-major order and move to an element when it is
// greater than the running max or NaN, so the first maximum wins and a NaN propagates.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t max3(const scalar_t* __restrict__ x, int64_t i, int h, int w, const Geometry& geo,
                                      int& arg) {
  const int h0 = max(h - 1, 0), h1 = min(h + 1, geo.H - 1), w0 = max(w - 1, 0), w1 = min(w + 1, geo.W - 1);
  acc_t m = -std::numeric_limits<acc_t>::infinity();
  arg = pixel_offset(h0 - h, w0 - w, geo);
  for (int ih = h0; ih <= h1; ++ih) {
    for (int iw = w0; iw <= w1; ++iw) {
      const int off = pixel_offset(ih - h, iw - w, geo);
      const acc_t v = static_cast<acc_t>(x[i + off]);
      if (v > m || at::_isnan(v)) {
        m = v;
        arg = off;
      }
    }
  }
  return m;
}

// coef[j] = sum of the gate values of term j, summed in entry order.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_coefficients(const Launch<scalar_t>& L, const acc_t* __restrict__ w,
                                                  acc_t* coef) {
  if (threadIdx.x < kTerms) {
    acc_t c = 0;
    for (int r = L.begin[threadIdx.x]; r < L.begin[threadIdx.x + 1]; ++r) c += w[L.gate[r]];
    coef[threadIdx.x] = c;
  }
  __syncthreads();
}

// acc_in/acc_out carry a float32 (float64) running sum between launches when one launch is not enough.
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(Launch<scalar_t> L, const acc_t* __restrict__ w, Geometry geo,
                               const acc_t* acc_in, acc_t* acc_out, scalar_t* __restrict__ out) {
  __shared__ acc_t coef[kTerms];
  load_coefficients(L, w, coef);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < geo.n; i += stride) {
    int h_, w_;
    plane_position(i, geo, h_, w_);
    acc_t a = acc_in != nullptr ? acc_in[i] : acc_t(0);
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (s >= L.slots) break;
      const scalar_t* __restrict__ x = L.x[s];
      if (L.column[s * 3 + kIdentity] >= 0) a += coef[s * 3 + kIdentity] * static_cast<acc_t>(x[i]);
      if (L.column[s * 3 + kAvgPool3x3] >= 0) {
        a += coef[s * 3 + kAvgPool3x3] * avg3<scalar_t, acc_t>(x, i, h_, w_, geo);
      }
      if (L.column[s * 3 + kMaxPool3x3] >= 0) {
        int arg;
        a += coef[s * 3 + kMaxPool3x3] * max3<scalar_t, acc_t>(x, i, h_, w_, geo, arg);
      }
    }
    if (out != nullptr) {
      out[i] = static_cast<scalar_t>(a);
    } else {
      acc_out[i] = a;
    }
  }
}

// One pass over grad_out for up to kSlots inputs. Input gradients in gather form (no atomics):
// identity g[p]; average pool sum over windows q containing p of g[q] / count(q); max pool sum over
// windows q containing p whose maximum sits at p of g[q]. Each term's <kind(x), g> leaves a per-block
// partial in partial[blockIdx.x * ld + column].
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(Launch<scalar_t> L, const acc_t* __restrict__ w, Geometry geo,
                                const scalar_t* __restrict__ g, acc_t* __restrict__ partial, int64_t ld) {
  __shared__ acc_t coef[kTerms];
  __shared__ acc_t shared[kThreads / 32];
  load_coefficients(L, w, coef);
  acc_t dot[kTerms];
#pragma unroll
  for (int j = 0; j < kTerms; ++j) dot[j] = acc_t(0);
  const int H = geo.H, W = geo.W;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < geo.n; i += stride) {
    int h_, w_;
    plane_position(i, geo, h_, w_);
    const int h0 = max(h_ - 1, 0), h1 = min(h_ + 1, H - 1), w0 = max(w_ - 1, 0), w1 = min(w_ + 1, W - 1);
    const acc_t gi = static_cast<acc_t>(g[i]);
    acc_t g_avg = 0;  // adjoint of the average pool at i, shared by all inputs
    if (L.any_avg) {
      for (int qh = h0; qh <= h1; ++qh) {
        for (int qw = w0; qw <= w1; ++qw) {
          g_avg += static_cast<acc_t>(g[i + pixel_offset(qh - h_, qw - w_, geo)]) /
                   static_cast<acc_t>(window_count(qh, qw, H, W));
        }
      }
    }
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (s >= L.slots) break;
      const scalar_t* __restrict__ x = L.x[s];
      acc_t gx = 0;
      if (L.column[s * 3 + kIdentity] >= 0) {
        dot[s * 3 + kIdentity] += static_cast<acc_t>(x[i]) * gi;
        gx += coef[s * 3 + kIdentity] * gi;
      }
      if (L.column[s * 3 + kAvgPool3x3] >= 0) {
        dot[s * 3 + kAvgPool3x3] += avg3<scalar_t, acc_t>(x, i, h_, w_, geo) * gi;
        gx += coef[s * 3 + kAvgPool3x3] * g_avg;
      }
      if (L.column[s * 3 + kMaxPool3x3] >= 0) {
        int arg;
        dot[s * 3 + kMaxPool3x3] += max3<scalar_t, acc_t>(x, i, h_, w_, geo, arg) * gi;
        acc_t g_max = 0;
        for (int qh = h0; qh <= h1; ++qh) {
          for (int qw = w0; qw <= w1; ++qw) {
            const int q = pixel_offset(qh - h_, qw - w_, geo);
            max3<scalar_t, acc_t>(x, i + q, qh, qw, geo, arg);
            if (q + arg == 0) g_max += static_cast<acc_t>(g[i + q]);
          }
        }
        gx += coef[s * 3 + kMaxPool3x3] * g_max;
      }
      scalar_t* __restrict__ gxp = L.gx[s];
      if (gxp != nullptr) {
        gxp[i] = static_cast<scalar_t>(L.accumulate[s] ? static_cast<acc_t>(gxp[i]) + gx : gx);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kTerms; ++j) {
    if (L.column[j] >= 0) {
      const acc_t sum = block_sum(dot[j], shared);
      if (threadIdx.x == 0) partial[static_cast<int64_t>(blockIdx.x) * ld + L.column_base + L.column[j]] = sum;
    }
  }
}

// Adds each term's total dot product to each of its gates; one thread, a fixed order: deterministic
// even where entries share a gate.
template <typename scalar_t, typename acc_t>
__global__ void scatter_gates_kernel(Launch<scalar_t> L, const acc_t* __restrict__ totals,
                                     acc_t* __restrict__ grad_w) {
  for (int j = 0; j < kTerms; ++j) {
    if (L.column[j] < 0) continue;
    const acc_t t = totals[L.column_base + L.column[j]];
    for (int r = L.begin[j]; r < L.begin[j + 1]; ++r) grad_w[L.gate[r]] += t;
  }
}

// Packs the terms into launches of at most kSlots inputs and kRefs gate references, input by input and
// kind by kind, so each launch's gates are ordered by term. An input split across two launches (only
// with more than kRefs entries) accumulates its gradient in the second.
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

int grid_for(int64_t n) {
  // Depends only on the size and the device, so the partial-sum order is reproducible.
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t{sms} * 8)));
}

// Pooling tensors come from node_layout: NCHW-contiguous, or channels_last-contiguous when not NCHW.
Geometry make_geometry(const at::Tensor& x, bool pooling) {
  Geometry g{x.numel(), 1, 1, 1};
  if (pooling) {
    const int64_t C = x.is_contiguous() ? 1 : x.size(1);
    // Window offsets are int: two rows of a plane must fit.
    TORCH_CHECK(x.size(2) < (int64_t{1} << 30) && 2 * (x.size(3) + 1) * C < (int64_t{1} << 30),
                "node_sum: spatial size ", x.sizes(), " is too large");
    g.H = static_cast<int32_t>(x.size(2));
    g.W = static_cast<int32_t>(x.size(3));
    g.C = static_cast<int32_t>(C);
  }
  return g;
}

at::Tensor node_sum_cuda(at::TensorList inputs, at::IntArrayRef sources, at::IntArrayRef kinds,
                         at::IntArrayRef gates, const at::Tensor& weights) {
  check_node_entries("node_sum", inputs, sources, kinds, gates, weights);
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  const NodeTerms terms = group_node_entries(static_cast<int64_t>(inputs.size()), sources, kinds, gates);
  std::vector<at::Tensor> xs = node_layout(inputs, terms.pooling);
  at::Tensor out = empty_node_like(xs[0], terms.pooling);
  if (out.numel() == 0) return out;
  const Geometry geo = make_geometry(xs[0], terms.pooling);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "node_sum_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    int64_t columns = 0;
    const auto launches = plan_launches<scalar_t>(terms, xs, {}, columns);
    at::Tensor acc;
    if (launches.size() > 1) acc = at::empty({out.numel()}, w.options());
    const int grid = grid_for(geo.n);
    auto stream = at::cuda::getCurrentCUDAStream();
    for (size_t l = 0; l < launches.size(); ++l) {
      const bool first = l == 0;
      const bool last = l + 1 == launches.size();
      forward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          launches[l], w.const_data_ptr<acc_t>(), geo, first ? nullptr : acc.const_data_ptr<acc_t>(),
          last ? nullptr : acc.mutable_data_ptr<acc_t>(), last ? out.mutable_data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> node_sum_backward_cuda(
    const at::Tensor& grad_out, at::TensorList inputs, at::IntArrayRef sources, at::IntArrayRef kinds,
    at::IntArrayRef gates, const at::Tensor& weights, bool need_inputs_grad) {
  check_node_entries("node_sum_backward", inputs, sources, kinds, gates, weights);
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  const NodeTerms terms = group_node_entries(static_cast<int64_t>(inputs.size()), sources, kinds, gates);
  BackwardBuffers buf = node_sum_backward_buffers(grad_out, inputs, weights, need_inputs_grad, terms);
  auto& [g, all, grad_xs, grad_w] = buf;
  if (g.numel() == 0) return {grad_xs, grad_w};
  const Geometry geo = make_geometry(g, terms.pooling);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "node_sum_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    int64_t columns = 0;
    const auto launches = plan_launches<scalar_t>(terms, all, grad_xs, columns);
    const int grid = grid_for(geo.n);
    auto stream = at::cuda::getCurrentCUDAStream();
    at::Tensor partial = at::empty({grid, columns}, w.options());
    at::Tensor totals = at::empty({columns}, w.options());
    at::Tensor grad_w_acc = at::zeros({weights.size(0)}, w.options());
    for (const auto& launch : launches) {
      backward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          launch, w.const_data_ptr<acc_t>(), geo, g.const_data_ptr<scalar_t>(), partial.mutable_data_ptr<acc_t>(),
          columns);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    sum_partials_kernel<acc_t><<<static_cast<unsigned>(columns), kThreads, 0, stream>>>(
        partial.const_data_ptr<acc_t>(), grid, columns, totals.mutable_data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    for (const auto& launch : launches) {
      scatter_gates_kernel<scalar_t, acc_t><<<1, 1, 0, stream>>>(launch, totals.const_data_ptr<acc_t>(),
                                                                 grad_w_acc.mutable_data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    grad_w.copy_(grad_w_acc);
  });
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, CUDA, m) {
  m.impl("node_sum", &node_sum_cuda);
  m.impl("node_sum_backward", &node_sum_backward_cuda);
}

}  // namespace goldnas
