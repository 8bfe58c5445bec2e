// CUDA kernels of goldnas::mixed_sum: out = sum_k w[k] * x_k, and its one-pass backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "checks.h"
#include "cuda/cuda_utils.cuh"
#include "layout.h"

namespace goldnas {
namespace {

constexpr int kFwdInputs = 16;  // inputs folded per forward launch
constexpr int kBwdInputs = 8;   // inputs per backward launch: one dot accumulator each per thread

template <typename scalar_t, int N>
struct ConstPtrs {
  const scalar_t* p[N];
};
template <typename scalar_t, int N>
struct Ptrs {
  scalar_t* p[N];
};

// acc_in/acc_out carry a float32 (float64) running sum between launches when K > kFwdInputs.
template <typename scalar_t, typename acc_t, int kVec>
__global__ void forward_kernel(ConstPtrs<scalar_t, kFwdInputs> x, int count, const acc_t* __restrict__ w,
                               const acc_t* acc_in, acc_t* acc_out, scalar_t* __restrict__ out, int64_t groups) {
  using Vec = AlignedVec<scalar_t, kVec>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < groups; v += stride) {
    acc_t a[kVec];
    if (acc_in != nullptr) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) a[j] = acc_in[v * kVec + j];
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) a[j] = acc_t(0);
    }
    for (int k = 0; k < count; ++k) {
      const Vec xv = reinterpret_cast<const Vec*>(x.p[k])[v];
      const acc_t wk = w[k];
#pragma unroll
      for (int j = 0; j < kVec; ++j) a[j] += wk * static_cast<acc_t>(xv.v[j]);
    }
    if (out != nullptr) {
      Vec ov;
#pragma unroll
      for (int j = 0; j < kVec; ++j) ov.v[j] = static_cast<scalar_t>(a[j]);
      reinterpret_cast<Vec*>(out)[v] = ov;
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc_out[v * kVec + j] = a[j];
    }
  }
}

// One pass over grad_out for up to kBwdInputs inputs: grad_x[k] = w[k] * g and a per-block partial of
// <x_k, g>, written to partial[blockIdx.x * ld + k].
template <typename scalar_t, typename acc_t, int kVec>
__global__ void backward_kernel(ConstPtrs<scalar_t, kBwdInputs> x, Ptrs<scalar_t, kBwdInputs> gx, int count,
                                const acc_t* __restrict__ w, const scalar_t* __restrict__ g, int64_t groups,
                                acc_t* __restrict__ partial, int64_t ld) {
  using Vec = AlignedVec<scalar_t, kVec>;
  __shared__ acc_t shared[kThreads / 32];
  acc_t dot[kBwdInputs];
  acc_t wk[kBwdInputs];
#pragma unroll
  for (int k = 0; k < kBwdInputs; ++k) {
    dot[k] = acc_t(0);
    wk[k] = k < count ? w[k] : acc_t(0);
  }
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; v < groups; v += stride) {
    const Vec gv = reinterpret_cast<const Vec*>(g)[v];
    acc_t ga[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) ga[j] = static_cast<acc_t>(gv.v[j]);
#pragma unroll
    for (int k = 0; k < kBwdInputs; ++k) {
      if (k < count) {
        const Vec xv = reinterpret_cast<const Vec*>(x.p[k])[v];
#pragma unroll
        for (int j = 0; j < kVec; ++j) dot[k] += static_cast<acc_t>(xv.v[j]) * ga[j];
        if (gx.p[k] != nullptr) {
          Vec ov;
#pragma unroll
          for (int j = 0; j < kVec; ++j) ov.v[j] = static_cast<scalar_t>(wk[k] * ga[j]);
          reinterpret_cast<Vec*>(gx.p[k])[v] = ov;
        }
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kBwdInputs; ++k) {
    if (k < count) {
      const acc_t s = block_sum(dot[k], shared);
      if (threadIdx.x == 0) partial[static_cast<int64_t>(blockIdx.x) * ld + k] = s;
    }
  }
}

int grid_for(int64_t groups) {
  // Depends only on the size and the device, so the partial-sum order is reproducible.
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t needed = (groups + kThreads - 1) / kThreads;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(needed, int64_t{sms} * 8)));
}

template <typename scalar_t>
bool can_vectorize(const std::vector<const void*>& ptrs, int64_t n) {
  constexpr int kVec = 16 / sizeof(scalar_t);
  if (n % kVec != 0) return false;
  return std::all_of(ptrs.begin(), ptrs.end(), [](const void* p) { return p == nullptr || aligned16(p); });
}

template <typename scalar_t, int kVec>
void launch_forward(const std::vector<at::Tensor>& xs, const at::Tensor& w, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = static_cast<int64_t>(xs.size());
  const int64_t groups = out.numel() / kVec;
  const int grid = grid_for(groups);
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor acc;
  if (K > kFwdInputs) acc = at::empty({out.numel()}, out.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
  for (int64_t k0 = 0; k0 < K; k0 += kFwdInputs) {
    const int count = static_cast<int>(std::min<int64_t>(kFwdInputs, K - k0));
    ConstPtrs<scalar_t, kFwdInputs> p{};
    for (int j = 0; j < count; ++j) p.p[j] = xs[k0 + j].const_data_ptr<scalar_t>();
    const bool first = k0 == 0;
    const bool last = k0 + count >= K;
    forward_kernel<scalar_t, acc_t, kVec><<<grid, kThreads, 0, stream>>>(
        p, count, w.const_data_ptr<acc_t>() + k0, first ? nullptr : acc.const_data_ptr<acc_t>(),
        last ? nullptr : acc.mutable_data_ptr<acc_t>(), last ? out.mutable_data_ptr<scalar_t>() : nullptr, groups);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

template <typename scalar_t, int kVec>
void launch_backward(const at::Tensor& g, const std::vector<at::Tensor>& xs, const at::Tensor& w,
                     std::vector<at::Tensor>& grad_xs, at::Tensor& grad_w_acc) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = static_cast<int64_t>(xs.size());
  const int64_t groups = g.numel() / kVec;
  const int grid = grid_for(groups);
  auto stream = at::cuda::getCurrentCUDAStream();
  at::Tensor partial = at::empty({grid, K}, grad_w_acc.options());
  for (int64_t k0 = 0; k0 < K; k0 += kBwdInputs) {
    const int count = static_cast<int>(std::min<int64_t>(kBwdInputs, K - k0));
    ConstPtrs<scalar_t, kBwdInputs> p{};
    Ptrs<scalar_t, kBwdInputs> gp{};
    for (int j = 0; j < count; ++j) {
      p.p[j] = xs[k0 + j].const_data_ptr<scalar_t>();
      gp.p[j] = grad_xs.empty() ? nullptr : grad_xs[k0 + j].mutable_data_ptr<scalar_t>();
    }
    backward_kernel<scalar_t, acc_t, kVec><<<grid, kThreads, 0, stream>>>(
        p, gp, count, w.const_data_ptr<acc_t>() + k0, g.const_data_ptr<scalar_t>(), groups,
        partial.mutable_data_ptr<acc_t>() + k0, K);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  sum_partials_kernel<acc_t><<<static_cast<unsigned>(K), kThreads, 0, stream>>>(
      partial.const_data_ptr<acc_t>(), grid, K, grad_w_acc.mutable_data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor mixed_sum_cuda(at::TensorList inputs, const at::Tensor& weights) {
  check_mixed_sum_args("mixed_sum", inputs, weights);
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  std::vector<at::Tensor> xs = dense_same_layout(inputs);
  at::Tensor out = empty_like_layout(xs[0]);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "mixed_sum_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights_as<acc_t>(weights);
    std::vector<const void*> ptrs{out.const_data_ptr()};
    for (const auto& x : xs) ptrs.push_back(x.const_data_ptr());
    if (can_vectorize<scalar_t>(ptrs, out.numel())) {
      launch_forward<scalar_t, 16 / sizeof(scalar_t)>(xs, w, out);
    } else {
      launch_forward<scalar_t, 1>(xs, w, out);
    }
  });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> mixed_sum_backward_cuda(const at::Tensor& grad_out,
                                                                        at::TensorList inputs,
                                                                        const at::Tensor& weights,
                                                                        bool need_inputs_grad) {
  check_mixed_sum_args("mixed_sum_backward", inputs, weights);
  const c10::cuda::CUDAGuard guard(inputs[0].device());
  BackwardBuffers buf = mixed_sum_backward_buffers(grad_out, inputs, weights, need_inputs_grad);
  auto& [g, all, grad_xs, grad_w] = buf;
  if (g.numel() == 0) return {grad_xs, grad_w};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mixed_sum_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor w = weights_as<acc_t>(weights);
    // The gate gradient is summed straight into grad_w where it has the type acc_t (no copy).
    const bool direct = grad_w.scalar_type() == w.scalar_type();
    at::Tensor grad_w_acc = direct ? grad_w : at::empty({weights.size(0)}, w.options());
    std::vector<const void*> ptrs{g.const_data_ptr()};
    for (const auto& x : all) ptrs.push_back(x.const_data_ptr());
    for (const auto& x : grad_xs) ptrs.push_back(x.const_data_ptr());
    if (can_vectorize<scalar_t>(ptrs, g.numel())) {
      launch_backward<scalar_t, 16 / sizeof(scalar_t)>(g, all, w, grad_xs, grad_w_acc);
    } else {
      launch_backward<scalar_t, 1>(g, all, w, grad_xs, grad_w_acc);
    }
    if (!direct) grad_w.copy_(grad_w_acc);
  });
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, CUDA, m) {
  m.impl("mixed_sum", &mixed_sum_cuda);
  m.impl("mixed_sum_backward", &mixed_sum_backward_cuda);
}

}  // namespace goldnas
