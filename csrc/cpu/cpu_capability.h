#pragma once
// Which instruction-set build of the CPU loops runs: decided once per process.
#include <cstdint>

namespace goldnas {

enum CpuCapability : int64_t { kCapabilityBaseline = 0, kCapabilityAvx2 = 1 };

// kCapabilityAvx2 where the AVX2 loops were built and the CPU has AVX2, unless the environment variable
// GOLDNAS_CPU_CAPABILITY=baseline asks for the baseline loops (to compare, or to rule them out). Read once,
// at the first call (the first mixed_sum or goldnas_fast._library.cpu_capability()).
CpuCapability cpu_capability();

}  // namespace goldnas
