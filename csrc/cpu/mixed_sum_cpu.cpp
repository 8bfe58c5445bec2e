// CPU kernels of goldnas::mixed_sum: out = sum_k w[k] * x_k, and its one-pass backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <type_traits>
#include <vector>

#include "checks.h"
#include "layout.h"
#include "cpu/cpu_capability.h"
#ifdef GOLDNAS_AVX2
#include "cpu/mixed_sum_avx2.h"
#endif

namespace goldnas {
namespace {

#include "cpu/mixed_sum_blocks.inc"

// Elements per block: a block of the accumulator stays in L1/L2 while the K inputs stream past;
// large tensors get longer blocks so each input stream spans several pages (the prefetcher needs
// that). The block grid depends on n only, never on the thread count, so gate-gradient sums are
// deterministic.
constexpr int64_t kMaxBlock = 16384;

inline int64_t block_size(int64_t n) { return n >= (int64_t{1} << 20) ? kMaxBlock : 4096; }

template <typename acc_t>
std::vector<acc_t> weights_on_host(const at::Tensor& weights, int64_t k) {
  const at::Tensor w = weights_as<acc_t>(weights);
  const acc_t* p = w.const_data_ptr<acc_t>();
  return std::vector<acc_t>(p, p + k);
}

// The block loops for this CPU: float32 takes the AVX2 build of mixed_sum_blocks.inc where the CPU has
// AVX2 (2x wider vectors; the loops are memory bound, but at NAS sizes much of the data is in cache and
// the baseline SSE2 code was measurably slower); GOLDNAS_CPU_CAPABILITY=baseline forces the baseline.
template <typename scalar_t>
struct BlockLoops {
  using acc_t = at::opmath_type<scalar_t>;
  void (*forward)(const scalar_t* const*, const acc_t*, int64_t, int64_t, int64_t, scalar_t*, acc_t*) =
      &forward_block<scalar_t, acc_t>;
  void (*backward)(const scalar_t* const*, scalar_t* const*, const acc_t*, const acc_t*, int64_t, int64_t, int64_t,
                   acc_t*) = &backward_block<scalar_t, acc_t>;
};

template <typename scalar_t>
BlockLoops<scalar_t> block_loops() {
  BlockLoops<scalar_t> loops;
#ifdef GOLDNAS_AVX2
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_capability() == kCapabilityAvx2) {
      loops.forward = &mixed_sum_forward_block_avx2;
      loops.backward = &mixed_sum_backward_block_avx2;
    }
  }
#endif
  return loops;
}

template <typename scalar_t>
void forward_kernel(const std::vector<at::Tensor>& xs, const at::Tensor& weights, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = static_cast<int64_t>(xs.size());
  const int64_t n = out.numel();
  std::vector<const scalar_t*> x(K);
  for (int64_t k = 0; k < K; ++k) x[k] = xs[k].const_data_ptr<scalar_t>();
  const std::vector<acc_t> w = weights_on_host<acc_t>(weights, K);
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  const int64_t kBlock = block_size(n);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  const auto loops = block_loops<scalar_t>();
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<acc_t> acc(K > kMaxDirect ? kBlock : 0);
    for (int64_t b = b0; b < b1; ++b) {
      loops.forward(x.data(), w.data(), K, b * kBlock, std::min(kBlock, n - b * kBlock), o, acc.data());
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad, const std::vector<at::Tensor>& xs, const at::Tensor& weights,
                     std::vector<at::Tensor>& grad_xs, at::Tensor& grad_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t K = static_cast<int64_t>(xs.size());
  const int64_t n = grad.numel();
  const bool need_x = !grad_xs.empty();
  std::vector<const scalar_t*> x(K);
  std::vector<scalar_t*> gx(need_x ? K : 0);
  for (int64_t k = 0; k < K; ++k) {
    x[k] = xs[k].const_data_ptr<scalar_t>();
    if (need_x) gx[k] = grad_xs[k].mutable_data_ptr<scalar_t>();
  }
  const std::vector<acc_t> w = weights_on_host<acc_t>(weights, K);
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  const int64_t kBlock = block_size(n);
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<acc_t> partial(static_cast<size_t>(blocks * K), acc_t(0));
  const auto loops = block_loops<scalar_t>();
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<acc_t> widened(std::is_same_v<scalar_t, acc_t> ? 0 : kBlock);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t start = b * kBlock;
      const int64_t len = std::min(kBlock, n - start);
      // Full precision: read the gradient in place; reduced precision: widen a block of it once.
      const acc_t* gblock;
      if constexpr (std::is_same_v<scalar_t, acc_t>) {
        gblock = g + start;
      } else {
        for (int64_t i = 0; i < len; ++i) widened[i] = static_cast<acc_t>(g[start + i]);
        gblock = widened.data();
      }
      loops.backward(x.data(), need_x ? gx.data() : nullptr, w.data(), gblock, K, start, len, &partial[b * K]);
    }
  });
  // Blocks are summed in a fixed order, in double, so the result does not depend on threading.
  std::vector<double> gw(static_cast<size_t>(K), 0.0);
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t b = 0; b < blocks; ++b) gw[k] += static_cast<double>(partial[b * K + k]);
  }
  store_host_sums(gw, grad_w);
}

at::Tensor mixed_sum_cpu(at::TensorList inputs, const at::Tensor& weights) {
  check_mixed_sum_args("mixed_sum", inputs, weights);
  std::vector<at::Tensor> xs = dense_same_layout(inputs);
  at::Tensor out = empty_like_layout(xs[0]);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "mixed_sum_cpu",
                                  [&] { forward_kernel<scalar_t>(xs, weights, out); });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> mixed_sum_backward_cpu(const at::Tensor& grad_out,
                                                                       at::TensorList inputs,
                                                                       const at::Tensor& weights,
                                                                       bool need_inputs_grad) {
  check_mixed_sum_args("mixed_sum_backward", inputs, weights);
  BackwardBuffers buf = mixed_sum_backward_buffers(grad_out, inputs, weights, need_inputs_grad);
  auto& [g, all, grad_xs, grad_w] = buf;
  if (g.numel() == 0) return {grad_xs, grad_w};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "mixed_sum_backward_cpu",
                                  [&] { backward_kernel<scalar_t>(g, all, weights, grad_xs, grad_w); });
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, CPU, m) {
  m.impl("mixed_sum", &mixed_sum_cpu);
  m.impl("mixed_sum_backward", &mixed_sum_backward_cpu);
}

}  // namespace goldnas
