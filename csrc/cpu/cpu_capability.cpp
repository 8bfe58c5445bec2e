#include "cpu/cpu_capability.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

namespace goldnas {

CpuCapability cpu_capability() {
  static const CpuCapability capability = [] {
    const char* forced = std::getenv("GOLDNAS_CPU_CAPABILITY");
    if (forced != nullptr && std::strcmp(forced, "baseline") == 0) return kCapabilityBaseline;
    if (forced != nullptr && forced[0] != '\0' && std::strcmp(forced, "default") != 0) {
      TORCH_WARN("GOLDNAS_CPU_CAPABILITY=", forced, " is not 'baseline' or 'default'; ignored");
    }
#if defined(GOLDNAS_AVX2) && (defined(__GNUC__) || defined(__clang__))
    if (__builtin_cpu_supports("avx2")) return kCapabilityAvx2;
#endif
    return kCapabilityBaseline;
  }();
  return capability;
}

}  // namespace goldnas
