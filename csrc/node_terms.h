#pragma once
// node_sum's entry kinds and the grouping of a node's entries into terms, shared by its CPU and CUDA kernels.
#include <c10/util/ArrayRef.h>

#include <array>
#include <cstdint>
#include <vector>

namespace goldnas {

// node_sum entry kinds; the codes are goldnas_fast.ops.Kind.
enum NodeKind : int64_t { kIdentity = 0, kAvgPool3x3 = 1, kMaxPool3x3 = 2, kNumKinds = 3 };

// The entries of a node grouped into terms (input u, kind k): gates[u][k] lists, in entry order, the
// gates of every entry that applies kind k to input u. Entries that share a term share one operator
// evaluation (coefficient = sum of their gates) and one dot product for the gate gradient.
struct NodeTerms {
  std::vector<std::array<std::vector<int64_t>, kNumKinds>> gates;
  bool pooling = false;

  bool used(size_t u) const {
    return !gates[u][kIdentity].empty() || !gates[u][kAvgPool3x3].empty() || !gates[u][kMaxPool3x3].empty();
  }
};

// Entries must have passed check_node_entries.
inline NodeTerms group_node_entries(int64_t num_inputs, c10::IntArrayRef sources, c10::IntArrayRef kinds,
                                    c10::IntArrayRef gates) {
  NodeTerms t;
  t.gates.resize(static_cast<size_t>(num_inputs));
  for (size_t e = 0; e < sources.size(); ++e) {
    t.gates[sources[e]][kinds[e]].push_back(gates[e]);
    t.pooling = t.pooling || kinds[e] != kIdentity;
  }
  return t;
}

}  // namespace goldnas
