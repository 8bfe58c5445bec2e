#pragma once
// Small device helpers shared by the goldnas CUDA kernels.
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace goldnas {

constexpr int kThreads = 256;

template <typename T, int N>
struct alignas(sizeof(T) * N) AlignedVec {
  T v[N];
};

// Fixed-shape tree reduction over a block: the same inputs always give the same sum (no atomics).
template <typename acc_t>
__device__ acc_t block_sum(acc_t value, acc_t* shared /* kThreads / 32 entries */) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(0xffffffffu, value, offset);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  if (lane == 0) shared[warp] = value;
  __syncthreads();
  acc_t total = 0;
  if (warp == 0) {
    total = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : acc_t(0);
    for (int offset = 16; offset > 0; offset >>= 1) total += __shfl_down_sync(0xffffffffu, total, offset);
  }
  __syncthreads();
  return total;  // valid in thread 0
}

// Sums rows of partial[blocks][stride] column by column into out[col], one CUDA block per column.
template <typename acc_t>
__global__ void sum_partials_kernel(const acc_t* __restrict__ partial, int64_t blocks, int64_t stride,
                                    acc_t* __restrict__ out) {
  __shared__ acc_t shared[kThreads / 32];
  const int64_t col = blockIdx.x;
  acc_t s = 0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) s += partial[b * stride + col];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) out[col] = s;
}

inline bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace goldnas
