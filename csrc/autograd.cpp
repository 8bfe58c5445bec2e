// Autograd of goldnas::mixed_sum and goldnas::node_sum, in C++ for every device: the backward of each is
// its one-pass backward op. Written here rather than with torch.library.register_autograd because the
// Python autograd path costs tens of microseconds per call (argument flattening, a Python context),
// which at NAS tensor sizes exceeds the kernels' own time. torch.compile traces through these functions
// to the ops' fake registrations (goldnas_fast/ops/*.py), as for any C++ autograd kernel.
//
// Double backward is not supported: the backward ops have no derivative. With create_graph=True the gradients
// depend on the saved tensors through a node that raises when it is differentiated, and a direct call of a
// backward op on tensors that require grad raises in its backward (never zeros).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <functional>
#include <string>
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

// Whether the backward must compute the input gradients: some input's gradient is wanted by this backward
// pass (not merely some input requires grad: torch.autograd.grad(loss, [weights]) wants none).
bool inputs_grad_wanted(const AutogradContext* ctx, size_t num_inputs) {
  for (size_t u = 0; u < num_inputs; ++u) {
    if (ctx->needs_input_grad(u)) return true;
  }
  return false;
}

// A backward op run under create_graph=True (grad mode on in the backward): its results depend on `used`
// (the saved tensors and the output gradient) through this node, whose backward raises, so differentiating
// them again fails loudly instead of giving zeros.
struct NotTwiceDifferentiable : public torch::autograd::Function<NotTwiceDifferentiable> {
  static variable_list forward(AutogradContext* ctx, at::TensorList used, const std::string& op,
                               const std::function<variable_list()>& compute) {
    ctx->saved_data["op"] = op;
    return compute();
  }

  static variable_list backward(AutogradContext* ctx, variable_list) {
    TORCH_CHECK(false, ctx->saved_data["op"].toStringRef(),
                ": double backward is not supported (its backward is not differentiable); use the plain-PyTorch "
                "reference for higher-order gradients");
  }
};

// Runs `compute` (the backward op: input gradients, possibly none, then the gate gradient) and returns the
// gradients for the inputs (undefined where not computed), `skipped` non-tensor arguments, then the weights.
template <typename Compute>
variable_list input_gradients(const std::string& op, const variable_list& xs, const at::Tensor& weights,
                              const at::Tensor& grad_out, size_t skipped, Compute compute) {
  variable_list grads;
  if (at::GradMode::is_enabled() &&
      (any_requires_grad(xs) || weights.requires_grad() || grad_out.requires_grad())) {
    variable_list used = xs;
    used.push_back(weights);
    used.push_back(grad_out);
    // A TensorList, not the vector: apply() takes a std::vector argument for a non-tensor one (no edges).
    grads = NotTwiceDifferentiable::apply(at::TensorList(used), op, std::function<variable_list()>(compute));
  } else {
    grads = compute();
  }
  at::Tensor grad_w = std::move(grads.back());
  grads.pop_back();
  grads.resize(xs.size() + skipped);  // no input gradients computed: undefined ones
  grads.push_back(std::move(grad_w));
  return grads;
}

// The backward op's (input gradients, gate gradient) as one list, computed below autograd.
template <typename Op, typename... Args>
variable_list call_backward_op(const Op& op, Args&&... args) {
  at::AutoDispatchBelowADInplaceOrView below;
  auto [grad_xs, grad_w] = op.call(std::forward<Args>(args)...);
  grad_xs.push_back(std::move(grad_w));
  return grad_xs;
}

struct MixedSum : public torch::autograd::Function<MixedSum> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList inputs, const at::Tensor& weights) {
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
    const bool need_xs = inputs_grad_wanted(ctx, xs.size());
    return input_gradients("goldnas::mixed_sum", xs, weights, grad_outputs[0], 0,
                           [&] { return call_backward_op(op, grad_outputs[0], xs, weights, need_xs); });
  }
};

struct NodeSum : public torch::autograd::Function<NodeSum> {
  static at::Tensor forward(AutogradContext* ctx, at::TensorList inputs, c10::IntArrayRef sources,
                            c10::IntArrayRef kinds, c10::IntArrayRef gates, const at::Tensor& weights) {
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
    const bool need_xs = inputs_grad_wanted(ctx, xs.size());
    return input_gradients("goldnas::node_sum", xs, weights, grad_outputs[0], 3, [&] {
      return call_backward_op(op, grad_outputs[0], xs, sources, kinds, gates, weights, need_xs);
    });
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
  m.impl("mixed_sum_backward", torch::autograd::autogradNotImplementedFallback());
  m.impl("node_sum_backward", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace goldnas
