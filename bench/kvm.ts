// bench/kvm: JSON with
//  - setup: CPU time of the husk process from its start to vCPU 0's first
//    KVM_RUN of the kvm engine booting the project's kernel (Vm.start, as
//    husk does it), with its parts (Node's own start, module loading, the
//    machine set-up steps, the vCPU thread, other threads); medians of
//    several fresh processes (bench/kvm-setup.ts). Also reported: the
//    device worker's own CPU until its devices are up (it starts after the
//    first KVM_RUN) and an empty worker thread's CPU, the floor every
//    thread costs in Node.
//  - exitCost: ns per VM exit of the TypeScript vCPU loop (the engine's
//    VcpuLoop) against a minimal C loop, same tiny guest (port I/O in a
//    loop), measured alternately in the same run.
// Numbers only, never assertions. Needs /dev/kvm and cc.
// Run: .tools/node/bin/node dist/bench/kvm.js [exits] [setup runs]
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median, printJson, round } from './lib.js';
import { projectRoot } from '../src/vmm/assets.js';
import { VcpuLoop, CTL_BYTES, vcpuMmapSize } from '../src/vmm/engines/kvm/vcpu.js';
import { KVM, getSregs, ioctlInt, mapFd, openKvm, setRegs, setSregs, setUserMemoryRegion } from '../src/sys/kvm.js';
import { closeFd, memfdCreate } from '../src/sys/io.js';

type Tree = { [k: string]: number | Tree | null };

/** Field-wise median of several runs' JSON (same shape; a null is a run without that number), rounded. */
function medianTree(runs: Tree[]): Tree {
  const out: Tree = {};
  for (const k of Object.keys(runs[0]!)) {
    const vs = runs.map((r) => r[k]);
    const nums = vs.filter((v): v is number => typeof v === 'number');
    const trees = vs.filter((v): v is Tree => typeof v === 'object' && v !== null);
    out[k] = nums.length ? round(median(nums)) : trees.length ? medianTree(trees) : null;
  }
  return out;
}

function setup(runs: number) {
  const script = path.join(projectRoot(), 'dist/bench/kvm-setup.js');
  const results: Tree[] = [];
  for (let i = 0; i < runs; i++) {
    results.push(JSON.parse(execFileSync(process.execPath, [script], { encoding: 'utf8', env: { ...process.env } })) as Tree);
  }
  return {
    runs,
    ...medianTree(results),
    cpuMsToFirstRunRuns: results.map((r) => round(r.cpuMsToFirstRun as number)),
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

function main() {
  const exits = Number(process.argv[2] ?? 20000);
  const setupRuns = Number(process.argv[3] ?? 7);
  const setupResult = setup(setupRuns);
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

main();
