// Entry of a vCPU worker thread. Node's compile cache is per thread and a
// worker does not inherit the process's: turn it on (when the process has
// it) before the vCPU thread's modules are compiled, then load them.
import type { VcpuWorkerData } from './vcpu-thread.js';

if ((process.getBuiltinModule('node:worker_threads').workerData as VcpuWorkerData).compileCache) {
  process.getBuiltinModule('node:module').enableCompileCache?.();
}
await import('./vcpu-thread.js');
