// bench/kvm: JSON with
//  - setup: host-side time from process start to vCPU 0's first KVM_RUN of
//    the kvm engine booting the project's kernel (wall and CPU, plus the CPU
//    of the engine's own setup: from the start call to that KVM_RUN);
//  - exitCost: ns per VM exit of the TypeScript vCPU loop (the engine's
//    VcpuLoop) against a minimal C loop, same tiny guest (port I/O in a
//    loop), measured alternately in the same run.
// Numbers only, never assertions. Needs /dev/kvm and cc.
// Run: .tools/node/bin/node dist/bench/kvm.js [exits]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, printJson, round } from './lib.js';
import { projectRoot, guestAssets } from '../src/vmm/assets.js';
import { KvmMachine } from '../src/vmm/engines/kvm/machine.js';
import { DeviceHost } from '../src/vmm/vhost-user/device-host.js';
import type { MachineConfig } from '../src/vmm/engine.js';
import { VcpuLoop, CTL_BYTES, vcpuMmapSize } from '../src/vmm/engines/kvm/vcpu.js';
import { KVM, getSregs, ioctlInt, mapFd, openKvm, setRegs, setSregs, setUserMemoryRegion } from '../src/sys/kvm.js';
import { closeFd, memfdCreate } from '../src/sys/io.js';

async function setup() {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-kvm-'));
  const rootfs = path.join(tmp, 'rootfs');
  fs.mkdirSync(rootfs);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const config: MachineConfig = {
    stateDir: tmp, kernel: guestAssets().kernel, initrd: '', vcpus: 1, memoryMiB: 256,
    cmdline: 'console=ttyS0 quiet', consoleLog: path.join(tmp, 'console.log'),
    devices: [{ kind: 'fs', tag: 'rootfs', root: rootfs, readonly: true }, { kind: 'vsock', guestCid: 3, udsPath: path.join(tmp, 'v.sock') }],
  };
  const first = Promise.withResolvers<{ wallMs: number; cpuUs: number }>();
  const machine = new KvmMachine(config, (m) => { if (process.env.BENCH_DEBUG) console.error(m); }, { onFirstRun: (at) => first.resolve(at) });
  const devices = config.devices.map((spec, i) => new DeviceHost(spec, machine.transport(i), () => {}));
  const engine = machine.start(Promise.all(devices.map((d) => d.closed)));
  const at = await first.promise;
  engine.kill('SIGKILL');
  await engine.exited;
  await Promise.all(devices.map((d) => d.stop()));
  fs.rmSync(tmp, { recursive: true, force: true });
  return {
    wallMsFromProcessStart: round(at.wallMs - performance.timeOrigin),
    cpuMsFromProcessStart: round(at.cpuUs / 1000),
    engineSetupWallMs: round(at.wallMs - performance.timeOrigin - t0),
    engineSetupCpuMs: round((at.cpuUs - cpu0.user - cpu0.system) / 1000),
  };
}

/** A real-mode guest at 0x1000: mov dx,0x500; l: out dx,al; jmp l. */
function tsLoopGuest() {
  const kvm = openKvm();
  const vm = ioctlInt(kvm, KVM.CREATE_VM, 0, 'KVM_CREATE_VM');
  const memFd = memfdCreate('bench', 0x10000);
  const mem = mapFd(memFd, 0x10000);
  mem.bytes.set([0xba, 0x00, 0x05, 0xee, 0xeb, 0xfd], 0x1000);
  setUserMemoryRegion(vm, 0, 0, 0x10000, mem.addr);
  const vcpu = ioctlInt(vm, KVM.CREATE_VCPU, 0, 'KVM_CREATE_VCPU');
  const s = getSregs(vcpu);
  s.cs.base = 0n; s.cs.selector = 0;
  setSregs(vcpu, s);
  setRegs(vcpu, { rip: 0x1000n, rflags: 2n });
  let outs = 0;
  const loop = new VcpuLoop(vcpu, vcpuMmapSize(kvm), new Int32Array(new SharedArrayBuffer(CTL_BYTES)), {
    ioIn: () => 0xff,
    ioOut: (port) => { if (port === 0x500) outs++; },
    mmioRead: () => 0,
    mmioWrite: () => {},
    other: () => false,
  });
  return {
    run(n: number): number {
      const start = loop.exits;
      const t = process.hrtime.bigint();
      const r = loop.loop(start + n);
      const ns = Number(process.hrtime.bigint() - t);
      if (r.kind !== 'stopped' || outs < n) throw new Error(`guest loop ended: ${JSON.stringify(r)}`);
      return ns / n;
    },
    close() { loop.close(); closeFd(vcpu); closeFd(vm); mem.unmap(); closeFd(memFd); closeFd(kvm); },
  };
}

function buildC(): string {
  const out = path.join(projectRoot(), 'dist/bench/kvm-loop');
  const src = path.join(projectRoot(), 'bench/kvm-loop.c');
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    execFileSync('cc', ['-O2', '-o', out, src]);
  }
  return out;
}

async function main() {
  // device workers are unref'd (the engine keeps husk alive in production): hold the loop here
  const keepAlive = setInterval(() => {}, 1000);
  const exits = Number(process.argv[2] ?? 20000);
  const setupResult = await setup();
  const cBin = buildC();
  const guest = tsLoopGuest();
  guest.run(Math.ceil(exits / 10)); // warm-up (JIT)
  const c: number[] = [];
  const ts: number[] = [];
  for (let i = 0; i < 5; i++) {
    c.push(JSON.parse(execFileSync(cBin, [String(exits)], { encoding: 'utf8' })).nsPerExit);
    ts.push(guest.run(exits));
  }
  guest.close();
  clearInterval(keepAlive);
  const cMed = median(c), tsMed = median(ts);
  printJson({
    host: { kvm: fs.existsSync('/sys/module/kvm_pvm') ? 'pvm' : 'kvm', cpus: os.cpus().length, node: process.version },
    setup: { ...setupResult, goalCpuMs: 30 },
    exitCost: {
      exitsPerRun: exits,
      runs: 5,
      cNsPerExit: round(cMed),
      tsNsPerExit: round(tsMed),
      tsOverC: round(tsMed / cMed, 3),
      goalTsOverC: 1.1,
      cRuns: c.map((x) => round(x)),
      tsRuns: ts.map((x) => round(x)),
    },
  });
}

await main();
