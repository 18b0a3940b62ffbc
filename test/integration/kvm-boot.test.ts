// The kvm engine for real, on this machine's /dev/kvm: husk is the VMM
// (KVM ioctls through koffi, two vCPU worker threads, virtio-mmio registers in
// TypeScript, ioeventfd kicks and irqfd interrupts) and the unchanged
// virtio-fs and vsock backends run in their device workers. The project's
// kernel boots, probes both virtio-mmio devices, mounts husk's virtio-fs as
// its root file system (no initramfs) and reads /init through it.
//
// On a PVM host (DESIGN.md §1) the guest kernel is interpreted, so this
// takes minutes, and /init cannot run afterwards: the test ends once /init
// has been read. One boot only.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { scratch } from '../helpers/husk.js';
import { Vm } from '../../src/vmm/vm.js';
import { guestAssets } from '../../src/vmm/assets.js';

const hasKvm = fs.existsSync('/dev/kvm');
const BOOT_TIMEOUT_MS = Number(process.env.HUSK_KVM_BOOT_TIMEOUT_MS ?? 12 * 60_000);

let tmp: ReturnType<typeof scratch>;
beforeAll(() => { tmp = scratch('husk-kvm-'); });
afterAll(() => tmp.cleanup());

describe.skipIf(!hasKvm)('kvm engine boot on /dev/kvm', () => {
  it('boots the kernel, probes husk virtio-mmio devices, mounts virtio-fs as root and reads /init', async () => {
    const rootfs = path.join(tmp.dir, 'rootfs');
    fs.mkdirSync(rootfs);
    const init = path.join(rootfs, 'init');
    fs.copyFileSync(path.resolve(import.meta.dirname, '../../native/agent/build/husk-agent'), init);
    // A device-side record that READ hit /init: with relatime, the host file's
    // atime moves when husk's FUSE server reads it (nobody else does).
    fs.utimesSync(init, new Date(0), new Date());
    const atimeBefore = fs.statSync(init).atimeMs;
    const stateDir = path.join(tmp.dir, 'vm');
    fs.mkdirSync(stateDir);
    const consoleLog = path.join(stateDir, 'console.log');
    const logLines: string[] = [];
    const vm = Vm.start({
      stateDir,
      kernel: guestAssets().kernel,
      initrd: '',
      cmdline: 'console=ttyS0 loglevel=7 reboot=t panic=-1 root=rootfs rootfstype=virtiofs init=/init',
      // SMP: the AP comes up through INIT/SIPI (its real-mode trampoline runs, on PVM too)
      vcpus: 2,
      memoryMiB: 256,
      consoleLog,
      engine: 'kvm',
      devices: [
        { kind: 'fs', tag: 'rootfs', root: rootfs, readonly: true },
        { kind: 'vsock', guestCid: 3, udsPath: path.join(stateDir, 'vsock.sock') },
      ],
    }, (m) => logLines.push(m));
    let exited = false;
    void vm.engine.exited.then(() => { exited = true; });
    const kernelLog = () => (fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, 'latin1') : '');
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    let pausedLog: { before: number; after: number } | undefined;
    try {
      while (Date.now() < deadline && !exited) {
        if (/Run \/init as init process/.test(kernelLog()) && fs.statSync(init).atimeMs !== atimeBefore) break;
        if (!pausedLog && /virtio-mmio: Registering device virtio-mmio\.1/.test(kernelLog())) {
          // pause/resume mid-boot: pause() resolves once every vCPU is parked; the kernel says nothing
          // while paused, and after resume the boot carries on to /init (checked below).
          await vm.engine.pause();
          const before = kernelLog().length;
          await new Promise((r) => setTimeout(r, 3000));
          pausedLog = { before, after: kernelLog().length };
          await vm.engine.resume();
        }
        await new Promise((r) => setTimeout(r, 2000));
      }
    } finally {
      await vm.stop(0);
    }
    const klog = kernelLog();
    const diag = `vmm log:\n${logLines.join('\n')}\nkernel log tail:\n${klog.slice(-3000)}`;
    expect(logLines.join('\n'), diag).toMatch(/engine kvm: engine kvm requested/);
    expect(logLines.join('\n'), diag).not.toMatch(/vcpu\d error/);
    // the kernel log: both husk devices probed over virtio-mmio, root on virtio-fs, /init started
    expect(klog, diag).toMatch(/smp: Brought up 1 node, 2 CPUs/);
    expect(klog, diag).toMatch(/virtio-mmio: Registering device virtio-mmio\.0 at 0xd0000000/);
    expect(klog, diag).toMatch(/virtio-mmio: Registering device virtio-mmio\.1 at 0xd0001000/);
    expect(klog, diag).toMatch(/VFS: Mounted root \(virtiofs filesystem\)/);
    expect(klog, diag).toMatch(/Run \/init as init process/);
    // husk's own device-side record: the FUSE session and the reads it served
    const fsLine = logLines.find((l) => l.startsWith('device fs0 served '));
    expect(fsLine, diag).toBeDefined();
    const stats = JSON.parse(fsLine!.slice('device fs0 served '.length)) as Record<string, number>;
    expect(stats.INIT, diag).toBe(1);
    expect(stats.LOOKUP, diag).toBeGreaterThan(0);
    expect(stats.READ, diag).toBeGreaterThan(0);
    expect(stats.badChains).toBe(0);
    expect(fs.statSync(init).atimeMs, 'husk virtio-fs read /init').not.toBe(atimeBefore);
    expect(pausedLog, diag).toBeDefined();
    expect(pausedLog!.after, 'kernel output while paused').toBe(pausedLog!.before);
  });
});
