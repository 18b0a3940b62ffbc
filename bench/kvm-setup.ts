// One measurement for bench/kvm (run in a fresh process each time): start
// the kvm engine the way husk does (Vm.start: KvmMachine + device worker)
// on the project's kernel, stop at vCPU 0's first KVM_RUN, print JSON with
// the CPU time of this process from its start to that KVM_RUN and its
// parts. Only dynamic imports here: the first line runs before any of
// husk's modules are loaded, so module loading is measured, not hidden.
import module from 'node:module';

// Node's own start-up: getrusage here, before anything is loaded (it can lag by a scheduler tick,
// which then shows in mainModules instead); every later figure is clock_gettime, exact.
const usageMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
const atEntry = { process: usageMs(process.cpuUsage()), thread: usageMs(process.threadCpuUsage()) };
module.enableCompileCache?.(); // as bin/husk.js does

const fs = await import('node:fs');
const os = await import('node:os');
const path = await import('node:path');
const { Worker } = await import('node:worker_threads');
const { Vm } = await import('../src/vmm/vm.js');
const { guestAssets } = await import('../src/vmm/assets.js');
const { threadCpuUs } = await import('../src/sys/cpu-clock.js');
const threadMs = () => threadCpuUs() / 1000;
const afterModules = threadMs();

// device workers are unref'd (the engine keeps husk alive in production): hold the loop here
const keepAlive = setInterval(() => {}, 1000);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-kvm-'));
const rootfs = path.join(tmp, 'rootfs');
fs.mkdirSync(rootfs);
const devicesReady = Promise.withResolvers<number>();
const beforeStart = threadMs();
const vm = Vm.start({
  stateDir: tmp, kernel: guestAssets().kernel, initrd: '', vcpus: 1, memoryMiB: 256, engine: 'kvm',
  cmdline: 'console=ttyS0 quiet', consoleLog: path.join(tmp, 'console.log'),
  devices: [{ kind: 'fs', tag: 'rootfs', root: rootfs, readonly: true }, { kind: 'vsock', guestCid: 3, udsPath: path.join(tmp, 'v.sock') }],
}, (m) => { if (process.env.BENCH_DEBUG) console.error(m); }, {
  onDevicesReady: (us) => devicesReady.resolve(us / 1000),
});
const vmStartMain = threadMs() - beforeStart;
const first = await vm.kvm!.firstRun;
const mainAtFirstRun = threadMs();
if (!first) throw new Error('the engine ended before its first KVM_RUN');
const deviceWorkerMs = await Promise.race([devicesReady.promise, new Promise<null>((r) => setTimeout(() => r(null), 10_000))]);
await vm.stop(0);
fs.rmSync(tmp, { recursive: true, force: true });

// The floor a worker thread costs: an empty one's own CPU at its first line.
const emptyWorkerMs = await new Promise<number>((resolve, reject) => {
  const w = new Worker('const c = process.threadCpuUsage(); require("node:worker_threads").parentPort.postMessage(c.user + c.system)', { eval: true });
  w.once('message', (us: number) => { resolve(us / 1000); void w.terminate(); });
  w.once('error', reject);
});
clearInterval(keepAlive);

const machine = Object.fromEntries(Object.entries(vm.kvm!.setupCpuUs).map(([k, v]) => [k, v / 1000]));
const machineMs = Object.values(machine).reduce((a, b) => a + b, 0);
const processMs = first.cpuUs / 1000;
const vcpuMs = first.vcpuThreadCpuUs / 1000;
process.stdout.write(JSON.stringify({
  cpuMsToFirstRun: processMs,
  wallMsToFirstRun: first.wallMs - performance.timeOrigin,
  parts: {
    nodeStart: atEntry.process,
    mainModules: afterModules - atEntry.thread,
    machineSetup: machineMs,
    machineSteps: machine,
    mainStartWorkers: vmStartMain - machineMs,
    mainOther: mainAtFirstRun - afterModules - vmStartMain,
    vcpuThread: vcpuMs,
    otherThreads: processMs - mainAtFirstRun - vcpuMs,
  },
  // the device worker starts after the first KVM_RUN: its own CPU until every device is published
  deviceWorkerThreadCpuMs: deviceWorkerMs,
  emptyWorkerThreadCpuMs: emptyWorkerMs,
}) + '\n');
