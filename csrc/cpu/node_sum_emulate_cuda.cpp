// Test-only CPU op goldnas::_node_sum_emulate_cuda: node_sum's CUDA forward and backward run on the host,
// element by element, through the very functions the CUDA kernels run per thread (node_sum_launch.h,
// pool_index.h) and the same launch plan. Tests compare it with node_sum_ref, so that an index bug in the
// CUDA kernels (plane positions, NHWC offsets, windows, divisors) fails on a machine without a GPU. Slow:
// not for use outside tests.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "checks.h"
#include "layout.h"
#include "node_sum_launch.h"

namespace goldnas {
namespace {

template <typename scalar_t>
void emulate(const std::vector<at::Tensor>& xs, const BackwardBuffers& buf, const NodeTerms& terms,
             const at::Tensor& weights, const PlaneGeometry& geo, at::Tensor& out,
             std::vector<at::Tensor>& grad_xs, at::Tensor& grad_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const at::Tensor w = weights_as<acc_t>(weights);
  const acc_t* wp = w.const_data_ptr<acc_t>();
  auto coefficients = [&](const Launch<scalar_t>& L) {
    std::vector<acc_t> coef(kTerms);
    for (int j = 0; j < kTerms; ++j) coef[j] = term_coefficient(L, wp, j);
    return coef;
  };

  // Forward, launch by launch, with the float32 (float64) running sum between launches.
  int64_t columns = 0;
  const auto forward = plan_launches<scalar_t>(terms, xs, {}, columns);
  std::vector<acc_t> acc(static_cast<size_t>(geo.n), acc_t(0));
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  for (size_t l = 0; l < forward.size(); ++l) {
    const std::vector<acc_t> coef = coefficients(forward[l]);
    for (int64_t i = 0; i < geo.n; ++i) {
      acc[i] = forward_element(forward[l], coef.data(), geo, i, acc[i]);
      if (l + 1 == forward.size()) o[i] = static_cast<scalar_t>(acc[i]);
    }
  }

  // Backward: one "block" holding every element, then the gate scatter.
  const auto backward = plan_launches<scalar_t>(terms, buf.inputs, grad_xs, columns);
  std::vector<acc_t> totals(static_cast<size_t>(columns), acc_t(0));
  const scalar_t* g = buf.grad.const_data_ptr<scalar_t>();
  for (const auto& L : backward) {
    const std::vector<acc_t> coef = coefficients(L);
    acc_t dot[kTerms] = {};
    for (int64_t i = 0; i < geo.n; ++i) backward_element(L, coef.data(), geo, g, i, dot);
    for (int j = 0; j < kTerms; ++j) {
      if (L.column[j] >= 0) totals[L.column_base + L.column[j]] = dot[j];
    }
  }
  std::vector<acc_t> gw(static_cast<size_t>(weights.size(0)), acc_t(0));
  for (const auto& L : backward) scatter_gates(L, totals.data(), gw.data());
  store_host_sums(std::vector<double>(gw.begin(), gw.end()), grad_w);
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor> node_sum_emulate_cuda(
    const at::Tensor& grad_out, at::TensorList inputs, at::IntArrayRef sources, at::IntArrayRef kinds,
    at::IntArrayRef gates, const at::Tensor& weights) {
  const char* op = "_node_sum_emulate_cuda";
  check_node_entries(op, inputs, sources, kinds, gates, weights);
  const NodeTerms terms = group_node_entries(static_cast<int64_t>(inputs.size()), sources, kinds, gates);
  std::vector<at::Tensor> xs = node_layout(inputs, terms.pooling);
  at::Tensor out = empty_node_like(xs[0], terms.pooling);
  BackwardBuffers buf = node_sum_backward_buffers(op, grad_out, inputs, weights, true, terms);
  if (out.numel() == 0) return {out, buf.grad_inputs, buf.grad_weights};
  // Both geometries, as the two CUDA ops compute them: the forward's from the inputs, the backward's from
  // the gradient; they must agree.
  const PlaneGeometry geo = node_geometry(op, xs[0], terms.pooling);
  const PlaneGeometry geo_g = node_geometry(op, buf.grad, terms.pooling);
  TORCH_CHECK(geo.n == geo_g.n && geo.H == geo_g.H && geo.W == geo_g.W && geo.C == geo_g.C, op,
              ": the forward and backward plane geometries differ");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "node_sum_emulate_cuda", [&] {
    emulate<scalar_t>(xs, buf, terms, weights, geo, out, buf.grad_inputs, buf.grad_weights);
  });
  return {out, buf.grad_inputs, buf.grad_weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, CPU, m) { m.impl("_node_sum_emulate_cuda", &node_sum_emulate_cuda); }

}  // namespace goldnas
