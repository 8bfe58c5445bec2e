// CPU kernels of goldnas::node_sum: out = sum_e w[gate_e] * kind_e(x[source_e]), with the 3x3 pooling
// kinds evaluated on the fly, and its one-pass backward.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <tuple>
#include <vector>

#include "checks.h"
#include "layout.h"
#include "pool_index.h"

namespace goldnas {
namespace {

// Work is split into tasks of whole planes (pooling) or fixed-size chunks (identity only) of about
// kTaskElems elements. The split depends on the shape only, never on the thread count, so the gate
// gradients, summed per task and then over tasks in order, are deterministic.
constexpr int64_t kTaskElems = 4096;
constexpr int kLanes = 8;

// One plane (PlaneGeometry in pool_index.h) in 64-bit sizes: NCHW tensors are planes of one channel,
// channels_last tensors planes of all their channels, so neither needs a copy. Identity-only nodes use
// chunks of kTaskElems (H = C = 1) regardless of rank.
struct Plane {
  int64_t H, W, C;
  int64_t row() const { return W * C; }
  int64_t size() const { return H * W * C; }
};

struct Geometry {
  int64_t n;  // elements in all
  Plane shape;
  int64_t plane;   // elements of one plane
  int64_t planes;  // ceil(n / plane)
  int64_t per_task;
  int64_t tasks;
};

// Pooling tensors come from node_layout: NCHW-contiguous, or channels_last-contiguous when not NCHW.
Geometry make_geometry(const at::Tensor& x, bool pooling) {
  Geometry g{};
  g.n = x.numel();
  if (pooling) {
    g.shape = {x.size(2), x.size(3), x.is_contiguous() ? 1 : x.size(1)};
  } else {
    g.shape = {1, std::min(kTaskElems, g.n), 1};
  }
  g.plane = g.shape.size();
  g.planes = (g.n + g.plane - 1) / g.plane;
  g.per_task = std::max<int64_t>(1, kTaskElems / g.plane);
  g.tasks = (g.planes + g.per_task - 1) / g.per_task;
  return g;
}

// Calls edge(h, w) for every pixel whose 3x3 window is cut by the plane's border and interior(h, begin,
// end) for the element range [begin, end) of row h whose windows lie inside: there the neighbours sit
// at fixed offsets, so those loops run without bounds checks and vectorize.
template <typename Edge, typename Interior>
void for_each_pixel_run(const Plane& P, Edge edge, Interior interior) {
  for (int64_t h = 0; h < P.H; ++h) {
    if (h == 0 || h + 1 == P.H || P.W < 3) {
      for (int64_t w = 0; w < P.W; ++w) edge(h, w);
      continue;
    }
    edge(h, 0);
    interior(h, (h * P.W + 1) * P.C, (h * P.W + P.W - 1) * P.C);
    edge(h, P.W - 1);
  }
}

// out[p] = sum of the valid entries of in over the 3x3 window at p, added in row-major window order
// (the order of PyTorch's avg_pool2d, so results match it bit for bit in the interior).
template <typename in_t, typename acc_t>
void box_sum_plane(const in_t* in, const Plane& P, acc_t* out) {
  const int64_t C = P.C, R = P.row();
  auto v = [&](int64_t i) { return static_cast<acc_t>(in[i]); };
  for_each_pixel_run(
      P,
      [&](int64_t h, int64_t w) {
        acc_t* o = out + (h * P.W + w) * C;
        const Span<int64_t> r = window_span(h, P.H), c = window_span(w, P.W);
        if (C == 1) {  // NCHW: one element, summed in a register
          acc_t s = 0;
          for (int64_t ih = r.lo; ih <= r.hi; ++ih) {
            for (int64_t iw = c.lo; iw <= c.hi; ++iw) s += v(ih * P.W + iw);
          }
          *o = s;
          return;
        }
        std::fill(o, o + C, acc_t(0));
        for (int64_t ih = r.lo; ih <= r.hi; ++ih) {
          for (int64_t iw = c.lo; iw <= c.hi; ++iw) {
            const in_t* x = in + (ih * P.W + iw) * C;
            for (int64_t c = 0; c < C; ++c) o[c] += static_cast<acc_t>(x[c]);
          }
        }
      },
      [&](int64_t, int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) {
          out[i] = v(i - R - C) + v(i - R) + v(i - R + C) + v(i - C) + v(i) + v(i + C) + v(i + R - C) + v(i + R) +
                   v(i + R + C);
        }
      });
}

// Window sizes of a plane's elements, 1 to 9; computed once per task and shared by its planes.
template <typename acc_t>
std::vector<acc_t> window_counts(const Plane& P) {
  std::vector<acc_t> cnt(static_cast<size_t>(P.size()));
  for (int64_t h = 0; h < P.H; ++h) {
    for (int64_t w = 0; w < P.W; ++w) {
      std::fill_n(cnt.begin() + (h * P.W + w) * P.C, P.C, static_cast<acc_t>(window_count<int64_t>(h, w, P.H, P.W)));
    }
  }
  return cnt;
}

template <typename scalar_t, typename acc_t>
void avg_pool_plane(const scalar_t* x, const Plane& P, const acc_t* cnt, acc_t* out) {
  box_sum_plane(x, P, out);
  for (int64_t i = 0; i < P.size(); ++i) out[i] /= cnt[i];
}

template <typename acc_t>
struct SameSizeUInt;
template <>
struct SameSizeUInt<float> {
  using type = uint32_t;
};
template <>
struct SameSizeUInt<double> {
  using type = uint64_t;
};

// One step of PyTorch's max_pool2d window scan: move to v (at window position code) when it is greater
// than the running max or NaN. Written as a bitwise blend: GCC (with its default -ftrapping-math) does
// not if-convert two selects on a float compare, which left the loops below scalar and branchy.
template <typename acc_t>
inline void take_max(acc_t v, acc_t code, acc_t& m, acc_t& c) {
  using U = typename SameSizeUInt<acc_t>::type;
  const U take = U(0) - static_cast<U>((v > m) | (v != v));
  m = std::bit_cast<acc_t>((std::bit_cast<U>(v) & take) | (std::bit_cast<U>(m) & ~take));
  c = std::bit_cast<acc_t>((std::bit_cast<U>(code) & take) | (std::bit_cast<U>(c) & ~take));
}

// Scratch of max_pool_plane: per-row maxima and their column codes (0, 1, 2 for w - 1, w, w + 1).
// Positions are small float codes so that take_max blends them like the values.
template <typename acc_t>
struct MaxScratch {
  std::vector<acc_t> row_max;
  std::vector<acc_t> row_code;
  explicit MaxScratch(int64_t n) : row_max(static_cast<size_t>(n)), row_code(static_cast<size_t>(n)) {}
};

// Max over the 3x3 window at each p and, with kArg, the window position of the maximum as the code
// 3 * (row - h + 1) + (col - w + 1), by PyTorch's rule: scan the window in row-major order with take_max
// from -inf and the first position (first maximum wins, the last NaN wins). Computed separably: each
// row segment is scanned, then the row results are combined in row order with the same step, which
// lands on the same position as the row-major scan. Starting a scan at its first element equals starting
// at -inf with the first position. The CUDA kernel scans each window directly with the same rule.
template <bool kArg, typename scalar_t, typename acc_t>
void max_pool_plane(const scalar_t* x, const Plane& P, acc_t* out, acc_t* code, MaxScratch<acc_t>& s) {
  const int64_t C = P.C, R = P.row();
  acc_t* rm = s.row_max.data();
  acc_t* rc = s.row_code.data();
  for_each_pixel_run(
      P,
      [&](int64_t h, int64_t w) {
        const Span<int64_t> c = window_span(w, P.W);
        const int64_t w0 = c.lo, w1 = c.hi;
        const scalar_t* xr = x + h * R;
        const int64_t o = (h * P.W + w) * C;
        for (int64_t c = 0; c < C; ++c) {
          acc_t m = static_cast<acc_t>(xr[w0 * C + c]), k = static_cast<acc_t>(w0 - w + 1);
          for (int64_t iw = w0 + 1; iw <= w1; ++iw) {
            take_max(static_cast<acc_t>(xr[iw * C + c]), static_cast<acc_t>(iw - w + 1), m, k);
          }
          rm[o + c] = m;
          if (kArg) rc[o + c] = k;
        }
      },
      [&](int64_t, int64_t begin, int64_t end) {
        // Fixed 3-element segments, branch-free.
        for (int64_t i = begin; i < end; ++i) {
          acc_t m = static_cast<acc_t>(x[i - C]), k = 0;
          take_max(static_cast<acc_t>(x[i]), acc_t(1), m, k);
          take_max(static_cast<acc_t>(x[i + C]), acc_t(2), m, k);
          rm[i] = m;
          if (kArg) rc[i] = k;
        }
      });
  for (int64_t h = 0; h < P.H; ++h) {
    const Span<int64_t> rows = window_span(h, P.H);
    const int64_t r0 = rows.lo, r1 = rows.hi;
    acc_t* __restrict__ m = out + h * R;
    acc_t* __restrict__ c = kArg ? code + h * R : nullptr;
    const acc_t row0 = static_cast<acc_t>(3 * (r0 - h + 1));
    std::copy(rm + r0 * R, rm + (r0 + 1) * R, m);
    if (kArg) {
      for (int64_t i = 0; i < R; ++i) c[i] = row0 + rc[r0 * R + i];
    }
    for (int64_t r = r0 + 1; r <= r1; ++r) {
      const acc_t* __restrict__ v = rm + r * R;
      const acc_t* __restrict__ vc = rc + r * R;
      const acc_t row = static_cast<acc_t>(3 * (r - h + 1));
      for (int64_t i = 0; i < R; ++i) {
        acc_t mi = m[i], ci = kArg ? c[i] : acc_t(0);
        take_max(v[i], row + (kArg ? vc[i] : acc_t(0)), mi, ci);
        m[i] = mi;
        if (kArg) c[i] = ci;
      }
    }
  }
}

template <typename a_t, typename acc_t>
acc_t dot(const a_t* a, const acc_t* b, int64_t len) {
  acc_t lane[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= len; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += static_cast<acc_t>(a[i + j]) * b[i + j];
  }
  for (; i < len; ++i) lane[0] += static_cast<acc_t>(a[i]) * b[i];
  acc_t s = 0;
  for (int j = 0; j < kLanes; ++j) s += lane[j];
  return s;
}

// A gate-gradient dot product over one task's share of a plane, added up in double every kTaskElems
// elements: a channels_last plane is a whole image, too long for one float32 accumulation.
template <typename a_t, typename acc_t>
double long_dot(const a_t* a, const acc_t* b, int64_t len) {
  double s = 0.0;
  for (int64_t i = 0; i < len; i += kTaskElems) s += static_cast<double>(dot(a + i, b + i, std::min(kTaskElems, len - i)));
  return s;
}

// Terms (input, kind) with their coefficient sum_e w[gate_e] and the column of their gate-gradient dot.
template <typename acc_t>
struct HostTerms {
  std::vector<std::array<acc_t, kNumKinds>> coef;
  std::vector<std::array<int64_t, kNumKinds>> column;  // -1: no entry applies this kind to this input
  int64_t columns = 0;
  bool any_avg = false;
};

template <typename acc_t>
HostTerms<acc_t> host_terms(const NodeTerms& terms, const at::Tensor& weights) {
  const at::Tensor w = weights_as<acc_t>(weights);
  const acc_t* wp = w.const_data_ptr<acc_t>();
  HostTerms<acc_t> h;
  const size_t U = terms.gates.size();
  h.coef.resize(U);
  h.column.resize(U);
  for (size_t u = 0; u < U; ++u) {
    for (int k = 0; k < kNumKinds; ++k) {
      acc_t c = 0;
      for (int64_t gate : terms.gates[u][k]) c += wp[gate];
      h.coef[u][k] = c;
      h.column[u][k] = terms.gates[u][k].empty() ? -1 : h.columns++;
      h.any_avg = h.any_avg || (k == kAvgPool3x3 && !terms.gates[u][k].empty());
    }
  }
  return h;
}

template <typename scalar_t>
void forward_kernel(const std::vector<at::Tensor>& xs, const NodeTerms& terms, const at::Tensor& weights,
                    const Geometry& geo, at::Tensor& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const HostTerms<acc_t> ht = host_terms<acc_t>(terms, weights);
  const int64_t U = static_cast<int64_t>(xs.size());
  std::vector<const scalar_t*> x(U);
  for (int64_t u = 0; u < U; ++u) x[u] = xs[u].const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  at::parallel_for(0, geo.tasks, 1, [&](int64_t t0, int64_t t1) {
    const int64_t P = terms.pooling ? geo.plane : 0;
    std::vector<acc_t> acc(geo.plane), tmp(P);
    const std::vector<acc_t> cnt = terms.pooling ? window_counts<acc_t>(geo.shape) : std::vector<acc_t>();
    MaxScratch<acc_t> scratch(P);
    for (int64_t p = t0 * geo.per_task; p < std::min(t1 * geo.per_task, geo.planes); ++p) {
      const int64_t start = p * geo.plane;
      const int64_t len = std::min(geo.plane, geo.n - start);
      std::fill(acc.begin(), acc.begin() + len, acc_t(0));
      for (int64_t u = 0; u < U; ++u) {
        const scalar_t* xp = x[u] + start;
        if (ht.column[u][kIdentity] >= 0) {
          const acc_t c = ht.coef[u][kIdentity];
          for (int64_t i = 0; i < len; ++i) acc[i] += c * static_cast<acc_t>(xp[i]);
        }
        for (int k : {kAvgPool3x3, kMaxPool3x3}) {
          if (ht.column[u][k] < 0) continue;
          if (k == kAvgPool3x3) {
            avg_pool_plane(xp, geo.shape, cnt.data(), tmp.data());
          } else {
            max_pool_plane<false>(xp, geo.shape, tmp.data(), static_cast<acc_t*>(nullptr), scratch);
          }
          const acc_t c = ht.coef[u][k];
          for (int64_t i = 0; i < len; ++i) acc[i] += c * tmp[i];
        }
      }
      for (int64_t i = 0; i < len; ++i) o[start + i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad, const std::vector<at::Tensor>& xs, const NodeTerms& terms,
                     const at::Tensor& weights, const Geometry& geo, std::vector<at::Tensor>& grad_xs,
                     at::Tensor& grad_w) {
  using acc_t = at::opmath_type<scalar_t>;
  const HostTerms<acc_t> ht = host_terms<acc_t>(terms, weights);
  const int64_t U = static_cast<int64_t>(xs.size());
  const int64_t cols = ht.columns;
  const bool need_x = !grad_xs.empty();
  std::vector<const scalar_t*> x(U);
  std::vector<scalar_t*> gx(U, nullptr);
  for (int64_t u = 0; u < U; ++u) {
    x[u] = xs[u].const_data_ptr<scalar_t>();
    if (need_x) gx[u] = grad_xs[u].mutable_data_ptr<scalar_t>();
  }
  const scalar_t* g = grad.const_data_ptr<scalar_t>();
  std::vector<double> partial(static_cast<size_t>(geo.tasks * cols), 0.0);
  at::parallel_for(0, geo.tasks, 1, [&](int64_t t0, int64_t t1) {
    const int64_t L = geo.plane;
    const int64_t P = terms.pooling ? L : 0;
    std::vector<acc_t> gb(L), gxb(need_x ? L : 0), tmp(P), ga(ht.any_avg ? L : 0);
    std::vector<acc_t> code(P);
    // In-plane offset of each window position code (see max_pool_plane).
    int64_t offset[9];
    for (int k = 0; k < 9; ++k) offset[k] = pixel_offset<int64_t>(k / 3 - 1, k % 3 - 1, geo.shape.W, geo.shape.C);
    const std::vector<acc_t> cnt = terms.pooling ? window_counts<acc_t>(geo.shape) : std::vector<acc_t>();
    MaxScratch<acc_t> scratch(P);
    for (int64_t t = t0; t < t1; ++t) {
      double* part = partial.data() + t * cols;
      for (int64_t p = t * geo.per_task; p < std::min((t + 1) * geo.per_task, geo.planes); ++p) {
        const int64_t start = p * L;
        const int64_t len = std::min(L, geo.n - start);
        for (int64_t i = 0; i < len; ++i) gb[i] = static_cast<acc_t>(g[start + i]);
        if (ht.any_avg) {
          // Adjoint of the average pool in gather form: ga[p] = sum over windows q containing p of g[q] / count(q).
          for (int64_t i = 0; i < L; ++i) tmp[i] = gb[i] / cnt[i];
          box_sum_plane(tmp.data(), geo.shape, ga.data());
        }
        for (int64_t u = 0; u < U; ++u) {
          if (!terms.used(u)) continue;
          const scalar_t* xp = x[u] + start;
          if (need_x) std::fill(gxb.begin(), gxb.begin() + len, acc_t(0));
          if (ht.column[u][kIdentity] >= 0) {
            part[ht.column[u][kIdentity]] += long_dot(xp, gb.data(), len);
            if (need_x) {
              const acc_t c = ht.coef[u][kIdentity];
              for (int64_t i = 0; i < len; ++i) gxb[i] += c * gb[i];
            }
          }
          if (ht.column[u][kAvgPool3x3] >= 0) {
            avg_pool_plane(xp, geo.shape, cnt.data(), tmp.data());
            part[ht.column[u][kAvgPool3x3]] += long_dot(tmp.data(), gb.data(), len);
            if (need_x) {
              const acc_t c = ht.coef[u][kAvgPool3x3];
              for (int64_t i = 0; i < len; ++i) gxb[i] += c * ga[i];
            }
          }
          if (ht.column[u][kMaxPool3x3] >= 0) {
            max_pool_plane<true>(xp, geo.shape, tmp.data(), code.data(), scratch);
            part[ht.column[u][kMaxPool3x3]] += long_dot(tmp.data(), gb.data(), len);
            if (need_x) {
              // Scatter form within one plane, on one thread: deterministic and without atomics.
              const acc_t c = ht.coef[u][kMaxPool3x3];
              for (int64_t i = 0; i < len; ++i) gxb[i + offset[static_cast<int>(code[i])]] += c * gb[i];
            }
          }
          if (need_x) {
            scalar_t* gxp = gx[u] + start;
            for (int64_t i = 0; i < len; ++i) gxp[i] = static_cast<scalar_t>(gxb[i]);
          }
        }
      }
    }
  });
  // Tasks are summed in a fixed order, in double, then each term's dot goes to each of its gates.
  std::vector<double> gw(static_cast<size_t>(weights.size(0)), 0.0);
  for (int64_t u = 0; u < U; ++u) {
    for (int k = 0; k < kNumKinds; ++k) {
      const int64_t col = ht.column[u][k];
      if (col < 0) continue;
      double s = 0.0;
      for (int64_t t = 0; t < geo.tasks; ++t) s += partial[t * cols + col];
      for (int64_t gate : terms.gates[u][k]) gw[gate] += s;
    }
  }
  store_host_sums(gw, grad_w);
}

at::Tensor node_sum_cpu(at::TensorList inputs, at::IntArrayRef sources, at::IntArrayRef kinds,
                        at::IntArrayRef gates, const at::Tensor& weights) {
  check_node_entries("node_sum", inputs, sources, kinds, gates, weights);
  const NodeTerms terms = group_node_entries(static_cast<int64_t>(inputs.size()), sources, kinds, gates);
  std::vector<at::Tensor> xs = node_layout(inputs, terms.pooling);
  at::Tensor out = empty_node_like(xs[0], terms.pooling);
  if (out.numel() == 0) return out;
  const Geometry geo = make_geometry(xs[0], terms.pooling);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, out.scalar_type(), "node_sum_cpu",
                                  [&] { forward_kernel<scalar_t>(xs, terms, weights, geo, out); });
  return out;
}

std::tuple<std::vector<at::Tensor>, at::Tensor> node_sum_backward_cpu(
    const at::Tensor& grad_out, at::TensorList inputs, at::IntArrayRef sources, at::IntArrayRef kinds,
    at::IntArrayRef gates, const at::Tensor& weights, bool need_inputs_grad) {
  check_node_entries("node_sum_backward", inputs, sources, kinds, gates, weights);
  const NodeTerms terms = group_node_entries(static_cast<int64_t>(inputs.size()), sources, kinds, gates);
  BackwardBuffers buf =
      node_sum_backward_buffers("node_sum_backward", grad_out, inputs, weights, need_inputs_grad, terms);
  auto& [g, all, grad_xs, grad_w] = buf;
  if (g.numel() == 0) return {grad_xs, grad_w};
  const Geometry geo = make_geometry(g, terms.pooling);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "node_sum_backward_cpu", [&] {
    backward_kernel<scalar_t>(g, all, terms, weights, geo, grad_xs, grad_w);
  });
  return {grad_xs, grad_w};
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, CPU, m) {
  m.impl("node_sum", &node_sum_cpu);
  m.impl("node_sum_backward", &node_sum_backward_cpu);
}

}  // namespace goldnas
