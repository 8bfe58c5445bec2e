// Every goldnas op is declared here, once; kernels register per dispatch key in csrc/cpu and csrc/cuda.
#include <Python.h>
#include <torch/library.h>

#include "cpu/cpu_capability.h"

#ifdef GOLDNAS_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

extern "C" {
// The module only has to be importable so that loading it runs the static registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace goldnas {

int64_t cuda_version() {
#ifdef GOLDNAS_WITH_CUDA
  return CUDART_VERSION;
#else
  return -1;
#endif
}

TORCH_LIBRARY(goldnas, m) {
  m.def("_cuda_version() -> int", &cuda_version);
  m.def("_cpu_capability() -> int", [] { return static_cast<int64_t>(cpu_capability()); });
  m.def("mixed_sum(Tensor[] inputs, Tensor weights) -> Tensor");
  m.def(
      "mixed_sum_backward(Tensor grad_out, Tensor[] inputs, Tensor weights, bool need_inputs_grad)"
      " -> (Tensor[], Tensor)");
  m.def("node_sum(Tensor[] inputs, int[] sources, int[] kinds, int[] gates, Tensor weights) -> Tensor");
  m.def(
      "node_sum_backward(Tensor grad_out, Tensor[] inputs, int[] sources, int[] kinds, int[] gates,"
      " Tensor weights, bool need_inputs_grad) -> (Tensor[], Tensor)");
  // Test only, CPU only: node_sum's CUDA kernels emulated on the host (csrc/cpu/node_sum_emulate_cuda.cpp),
  // returning (out, grad_inputs, grad_weights).
  m.def(
      "_node_sum_emulate_cuda(Tensor grad_out, Tensor[] inputs, int[] sources, int[] kinds, int[] gates,"
      " Tensor weights) -> (Tensor, Tensor[], Tensor)");
}

}  // namespace goldnas
