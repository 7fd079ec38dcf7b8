// Programmatic dependent launch (PDL, sm_90): a kernel launched with it may start while the kernel before it
// on the stream is finishing; it waits (griddepcontrol.wait) before its first global read until that kernel
// has completed and its writes are visible. The kernels here trigger their dependents as they start, so a
// chain of them overlaps each launch's latency and block start-up with the previous one's tail.
// Without the launch attribute both instructions are no-ops.
#pragma once
#include <cuda_runtime.h>

namespace fp8flow::cuda {

__device__ __forceinline__ void pdl_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, s>>>(args...), with the PDL attribute when pdl is true.
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t s,
                          bool pdl, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...);
}

}  // namespace fp8flow::cuda
