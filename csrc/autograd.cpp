// Autograd of goldnas::mixed_sum and goldnas::node_sum, in C++ for every device: the backward of each is
// its one-pass backward op. Written here rather than with torch.library.register_autograd because the
// Python autograd path costs tens of microseconds per call (argument flattening, a Python context),
// which at NAS tensor sizes exceeds the kernels' own time. torch.compile traces through these functions
// to the ops' fake registrations (goldnas_fast/ops/*.py), as for any C++ autograd kernel.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <tuple>
#include <vector>

namespace goldnas {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool any_requires_grad(at::TensorList tensors) {
  for (const auto& t : tensors) {
    if (t.requires_grad()) return true;
  }
  return false;
}

// The inputs and the weights, saved as one list (weights last).
void save_inputs(AutogradContext* ctx, at::TensorList inputs, const at::Tensor& weights) {
  variable_list saved;
  saved.reserve(inputs.size() + 1);
  saved.insert(saved.end(), inputs.begin(), inputs.end());
  saved.push_back(weights);
  ctx->save_for_backward(std::move(saved));
}

// Gradients for the inputs (undefined where not wanted), `skipped` non-tensor arguments, then the weights.
variable_list input_gradients(std::vector<at::Tensor> grad_xs, size_t num_inputs, size_t skipped, at::Tensor grad_w) {
  variable_list out = grad_xs.empty() ? variable_list(num_inputs) : std::move(grad_xs);
  out.resize(num_inputs + skipped);
  out.push_back(std::move(grad_w));
  return out;
}

struct MixedSum : public torch::autograd::Function<MixedSum> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList inputs, const at::Tensor& weights) {
    ctx->saved_data["need_inputs_grad"] = any_requires_grad(inputs);
    save_inputs(ctx, inputs, weights);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("goldnas::mixed_sum", "")
                         .typed<at::Tensor(at::TensorList, const at::Tensor&)>();
    at::AutoDispatchBelowADInplaceOrView below;
    return op.call(inputs, weights);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list xs = ctx->get_saved_variables();
    const at::Tensor weights = xs.back();
    xs.pop_back();
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("goldnas::mixed_sum_backward", "")
                         .typed<std::tuple<std::vector<at::Tensor>, at::Tensor>(const at::Tensor&, at::TensorList,
                                                                                const at::Tensor&, bool)>();
    auto [grad_xs, grad_w] = op.call(grad_outputs[0], xs, weights, ctx->saved_data["need_inputs_grad"].toBool());
    return input_gradients(std::move(grad_xs), xs.size(), 0, std::move(grad_w));
  }
};

struct NodeSum : public torch::autograd::Function<NodeSum> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList inputs, c10::IntArrayRef sources,
                            c10::IntArrayRef kinds, c10::IntArrayRef gates, const at::Tensor& weights) {
    ctx->saved_data["need_inputs_grad"] = any_requires_grad(inputs);
    ctx->saved_data["sources"] = sources.vec();
    ctx->saved_data["kinds"] = kinds.vec();
    ctx->saved_data["gates"] = gates.vec();
    // Only the distinct inputs are saved: pooled outputs are recomputed by the backward kernel.
    save_inputs(ctx, inputs, weights);
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("goldnas::node_sum", "")
                         .typed<at::Tensor(at::TensorList, c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef,
                                           const at::Tensor&)>();
    at::AutoDispatchBelowADInplaceOrView below;
    return op.call(inputs, sources, kinds, gates, weights);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    variable_list xs = ctx->get_saved_variables();
    const at::Tensor weights = xs.back();
    xs.pop_back();
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("goldnas::node_sum_backward", "")
                         .typed<std::tuple<std::vector<at::Tensor>, at::Tensor>(
                             const at::Tensor&, at::TensorList, c10::IntArrayRef, c10::IntArrayRef, c10::IntArrayRef,
                             const at::Tensor&, bool)>();
    const std::vector<int64_t> sources = ctx->saved_data["sources"].toIntVector();
    const std::vector<int64_t> kinds = ctx->saved_data["kinds"].toIntVector();
    const std::vector<int64_t> gates = ctx->saved_data["gates"].toIntVector();
    auto [grad_xs, grad_w] = op.call(grad_outputs[0], xs, sources, kinds, gates, weights,
                                     ctx->saved_data["need_inputs_grad"].toBool());
    return input_gradients(std::move(grad_xs), xs.size(), 3, std::move(grad_w));
  }
};

at::Tensor mixed_sum_autograd(at::TensorList inputs, const at::Tensor& weights) {
  return MixedSum::apply(inputs, weights);
}

at::Tensor node_sum_autograd(at::TensorList inputs, c10::IntArrayRef sources, c10::IntArrayRef kinds,
                             c10::IntArrayRef gates, const at::Tensor& weights) {
  return NodeSum::apply(inputs, sources, kinds, gates, weights);
}

}  // namespace

TORCH_LIBRARY_IMPL(goldnas, Autograd, m) {
  m.impl("mixed_sum", &mixed_sum_autograd);
  m.impl("node_sum", &node_sum_autograd);
}

}  // namespace goldnas
