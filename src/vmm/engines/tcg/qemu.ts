// The tcg engine: QEMU runs the CPU (`-accel tcg -M microvm`) and nothing
// else of substance; every virtio device is a husk backend reached over
// vhost-user, with guest RAM shared through a memfd.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { EngineExit, MachineConfig, RunningEngine } from '../../engine.js';
import { qmpRun } from './qmp.js';

export const QEMU_BINARY = process.env.HUSK_QEMU ?? 'qemu-system-x86_64';
const SETPRIV = '/usr/bin/setpriv';

/** The machine: microvm without ACPI. The RTC must be on: without it the guest
 * kernel spends a whole second polling a CMOS clock that never answers, and
 * the container would see the epoch as the date. */
export const MICROVM_MACHINE = 'microvm,acpi=off,pit=on,pic=on,rtc=on,isa-serial=on,memory-backend=mem';

/** Guest kernel arguments only this engine needs. TCG emulates no TSC-deadline
 * timer, so the kernel would calibrate the local APIC timer against the PIT
 * (about 0.25 s of emulated busy-waiting); the PIT serves as the clock event instead. */
export const TCG_CMDLINE = 'noapictimer';

export function qmpSocketPath(stateDir: string): string {
  return `${stateDir}/qmp.sock`;
}

export function qemuArgs(cfg: MachineConfig, socketPaths: string[]): string[] {
  const args = [
    '-accel', 'tcg,thread=multi',
    // Thread names ("CPU 0/TCG") for top -H and /proc/PID/task: which thread is busy.
    '-name', 'husk,debug-threads=on',
    '-M', MICROVM_MACHINE,
    // Without ERMS/FSRM the guest kernel copies with unrolled 8-byte moves
    // instead of `rep movsb`, which TCG runs one byte per iteration: 3-4x
    // faster copy_to/from_user (pipes, sockets, files) in the guest.
    '-cpu', 'max,erms=off,fsrm=off',
    '-smp', String(cfg.vcpus),
    '-m', `${cfg.memoryMiB}M`,
    '-object', `memory-backend-memfd,id=mem,size=${cfg.memoryMiB}M,share=on`,
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-serial', `file:${cfg.consoleLog}`,
    '-monitor', 'none',
    // QMP for pause/resume: `stop` halts the vCPUs and QEMU stops the vhost-user rings.
    '-qmp', `unix:${qmpSocketPath(cfg.stateDir)},server=on,wait=off`,
    '-kernel', cfg.kernel,
    '-initrd', cfg.initrd,
    '-append', `${cfg.cmdline} ${TCG_CMDLINE}`,
  ];
  cfg.devices.forEach((d, i) => {
    const chardev = `dev${i}`;
    args.push('-chardev', `socket,id=${chardev},path=${socketPaths[i]}`);
    if (d.kind === 'fs') {
      args.push('-device', `vhost-user-fs-device,chardev=${chardev},tag=${d.tag},queue-size=1024`);
    } else if (d.kind === 'vsock') {
      args.push('-device', `vhost-user-vsock-device,chardev=${chardev}`);
    } else if (d.kind === 'net') {
      // QEMU keeps the config space (MAC, MTU) and the control queue; husk's backend moves the frames.
      args.push('-netdev', `vhost-user,id=net${i},chardev=${chardev}`);
      args.push('-device', `virtio-net-device,netdev=net${i},mac=${d.mac},host_mtu=${d.mtu},mrg_rxbuf=on,csum=on,guest_csum=on,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off,ctrl_vq=off,ctrl_rx=off,ctrl_vlan=off,ctrl_rx_extra=off,ctrl_mac_addr=off,ctrl_guest_offloads=off,guest_announce=off,mq=off,rx_queue_size=1024,tx_queue_size=1024`);
    }
  });
  return args;
}

export function startQemu(cfg: MachineConfig, socketPaths: string[]): RunningEngine {
  const errLog = fs.openSync(`${cfg.stateDir}/qemu.log`, 'a');
  // QEMU must not outlive husk even when husk is SIGKILLed: setpriv (util-linux)
  // sets the parent-death signal, which survives its exec of QEMU.
  const [cmd, args] = fs.existsSync(SETPRIV)
    ? [SETPRIV, ['--pdeathsig', 'SIGKILL', '--', QEMU_BINARY, ...qemuArgs(cfg, socketPaths)]]
    : [QEMU_BINARY, qemuArgs(cfg, socketPaths)];
  const child = spawn(cmd, args, {
    stdio: ['ignore', errLog, errLog],
    detached: false,
  });
  fs.closeSync(errLog);
  const exited = new Promise<EngineExit>((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: 127, signal: null }));
  });
  return {
    name: 'tcg',
    get pid() { return child.pid ?? -1; },
    exited,
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    async pause() {
      const st = await qmpRun(qmpSocketPath(cfg.stateDir), ['stop', 'query-status']) as { status?: string };
      if (st?.status !== 'paused') throw new Error(`QEMU did not pause (status ${st?.status})`);
    },
    async resume() {
      const st = await qmpRun(qmpSocketPath(cfg.stateDir), ['cont', 'query-status']) as { status?: string };
      if (st?.status !== 'running') throw new Error(`QEMU did not resume (status ${st?.status})`);
    },
  };
}
