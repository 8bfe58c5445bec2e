// CUDA kernels of goldnas::node_sum: out = sum_e w[gate_e] * kind_e(x[source_e]), with the 3x3 pooling
// kinds evaluated on the fly, and its one-pass backward. What a thread computes for one element lives in
// node_sum_launch.h, shared with the test-only CPU emulation of these kernels.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cuda/cuda_utils.cuh"
#include "layout.h"
#include "node_sum_launch.h"

namespace goldnas {
namespace {

// coef[j] = term j's coefficient, one thread per term.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_coefficients(const Launch<scalar_t>& L, const acc_t* __restrict__ w,
                                                  acc_t* coef) {
  if (threadIdx.x < kTerms) coef[threadIdx.x] = term_coefficient(L, w, threadIdx.x);
  __syncthreads();
}

// acc_in/acc_out carry a float32 (float64) running sum between launches when one launch is not enough.
template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(Launch<scalar_t> L, const acc_t* __restrict__ w, PlaneGeometry geo,
                               const acc_t* acc_in, acc_t* acc_out, scalar_t* __restrict__ out) {
  __shared__ acc_t coef[kTerms];
  load_coefficients(L, w, coef);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < geo.n; i += stride) {
    const acc_t a = forward_element(L, coef, geo, i, acc_in != nullptr ? acc_in[i] : acc_t(0));
    if (out != nullptr) {
      out[i] = static_cast<scalar_t>(a);
    } else {
      acc_out[i] = a;
    }
  }
}

// One pass over grad_out for up to kSlots inputs. Each term's <kind(x), g> leaves a per-block partial in
// partial[blockIdx.x * ld + column].
template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(Launch<scalar_t> L, const acc_t* __restrict__ w, PlaneGeometry geo,
                                const scalar_t* __restrict__ g, acc_t* __restrict__ partial, int64_t ld) {
  __shared__ acc_t coef[kTerms];
  __shared__ acc_t shared[kThreads / 32];
  load_coefficients(L, w, coef);
  acc_t dot[kTerms];
#pragma unroll
  for (int j = 0; j < kTerms; ++j) dot[j] = acc_t(0);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < geo.n; i += stride) {
    backward_element(L, coef, geo, g, i, dot);
  }
#pragma unroll
  for (int j = 0; j < kTerms; ++j) {
    if (L.column[j] >= 0) {
      const acc_t sum = block_sum(dot[j], shared);
      if (threadIdx.x == 0) partial[static_cast<int64_t>(blockIdx.x) * ld + L.column_base + L.column[j]] = sum;
    }
  }
}

// One thread, a fixed order: deterministic even where entries share a gate. The first launch's call
// zeroes the gate gradient first (no separate fill).
template <typename scalar_t, typename acc_t>
__global__ void scatter_gates_kernel(Launch<scalar_t> L, const acc_t* __restrict__ totals, acc_t* __restrict__ grad_w,
                                     int64_t zero_first) {
  for (int64_t j = 0; j < zero_first; ++j) grad_w[j] = acc_t(0);
  scatter_gates(L, totals, grad_w);
}

int grid_for(int64_t n) {
  // Depends only on the size and the device, so the partial-sum order is reproducible.
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed = (n + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t{sms} * 8)));
}

at::Tensor node_sum_cuda(at::TensorList inputs, at::IntArrayRef sources, at::IntArrayRef kinds,
                         at::IntArrayRef gates, const at::Tensor& weights) {
  check_node_entries("node_sum", inputs, sources, kinds, gates, weights);
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  const NodeTerms terms = group_node_entries(static_cast<int64_t>(inputs.size()), sources, kinds, gates);
  std::vector<at::Tensor> xs = node_layout(inputs, terms.pooling);
  at::Tensor out = empty_node_like(xs[0], terms.pooling);
  if (out.numel() == 0) return out;
  const PlaneGeometry geo = node_geometry("node_sum", xs[0], terms.pooling);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "node_sum_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights_as<acc_t>(weights);
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
  BackwardBuffers buf =
      node_sum_backward_buffers("node_sum_backward", grad_out, inputs, weights, need_inputs_grad, terms);
  auto& [g, all, grad_xs, grad_w] = buf;
  if (g.numel() == 0) return {grad_xs, grad_w};
  const PlaneGeometry geo = node_geometry("node_sum_backward", g, terms.pooling);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "node_sum_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights_as<acc_t>(weights);
    int64_t columns = 0;
    const auto launches = plan_launches<scalar_t>(terms, all, grad_xs, columns);
    const int grid = grid_for(geo.n);
    auto stream = at::cuda::getCurrentCUDAStream();
    // One scratch allocation: per-block partials, then the column totals, then (only where the gate
    // gradient's dtype is not acc_t) the gate gradient in acc_t.
    const bool direct = grad_w.scalar_type() == w.scalar_type();
    const int64_t W = weights.size(0);
    at::Tensor scratch = at::empty({int64_t{grid} * columns + columns + (direct ? 0 : W)}, w.options());
    acc_t* partial = scratch.mutable_data_ptr<acc_t>();
    acc_t* totals = partial + int64_t{grid} * columns;
    acc_t* grad_w_acc = direct ? grad_w.mutable_data_ptr<acc_t>() : totals + columns;
    for (const auto& launch : launches) {
      backward_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(
          launch, w.const_data_ptr<acc_t>(), geo, g.const_data_ptr<scalar_t>(), partial, columns);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    sum_partials_kernel<acc_t><<<static_cast<unsigned>(columns), kThreads, 0, stream>>>(partial, grid, columns, totals);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    for (size_t l = 0; l < launches.size(); ++l) {
      scatter_gates_kernel<scalar_t, acc_t><<<1, 1, 0, stream>>>(launches[l], totals, grad_w_acc, l == 0 ? W : 0);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (!direct) grad_w.copy_(scratch.narrow(0, int64_t{grid} * columns + columns, W));
  });
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, CUDA, m) {
  m.impl("node_sum", &node_sum_cuda);
  m.impl("node_sum_backward", &node_sum_backward_cuda);
}

}  // namespace goldnas
