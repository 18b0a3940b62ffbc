// A container's VM with its agent connected: what `run` and the VMM
// daemon behind `create` both start. Owns the VM's sockets and stops
// everything it started.
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import type { Bundle } from '../oci/bundle.js';
import { Vm } from '../vmm/vm.js';
import { guestAssets } from '../vmm/assets.js';
import { guestCmdline, type GuestCmdlineOptions } from '../vmm/cmdline.js';
import type { DeviceSpec } from '../vmm/devices/factory.js';
import { AgentConnection } from '../agent/client.js';
import { machineSize, type MachineSize } from './resources.js';
import { setupSpec, GUEST_BINDS_DIR, type BindExport } from './translate.js';
import { GuestNet } from './guest-net.js';
import type { NetworkPlan } from './network.js';
import { Passt, type PasstWire } from './passt.js';
import { closeFd } from '../sys/io.js';
import { FEATURE_DEFER_ROOT, FEATURE_NET } from '../agent/protocol.js';

export const AGENT_PORT = 1024;
export const GUEST_CID = 3;
const ROOTFS_TAG = 'rootfs';
const BINDS_TAG = 'binds';
/** A pooled VM's devices, in config order (Vm.configureDevice indexes). */
const POOLED = { rootfs: 0, vsock: 1, binds: 2, net: 3 } as const;
/** Announced at boot, before the container's MTU is known: the agent sets eth0's own (up to this). */
const POOLED_MAX_MTU = 65520;
/** Replaced by the agent at SETUP with the MAC of the namespace's interface. */
const POOLED_MAC = '02:00:00:00:00:01';

export class SandboxError extends Error {}

export interface SandboxOptions {
  /** container state directory (logs) */
  stateDir: string;
  /** short directory for the VM's unix sockets */
  socketDir: string;
  bundle: Bundle;
  log: (msg: string) => void;
  debug?: boolean;
  /** send the bundle's mounts/hostname/... to the agent (needs an agent with extension A) */
  setup?: boolean;
  /** the container's network went away while it runs (passt died) */
  onNetworkLost?: (msg: string) => void;
}

/** What a sandbox keeps of its options once it runs. */
type Kept = Pick<SandboxOptions, 'stateDir' | 'socketDir' | 'log'>;

/** Rejects with a SandboxError once the VM's engine exits; `during`: what that interrupted. */
function engineGone(vm: Vm, during: string, stateDir: string): Promise<never> {
  return vm.engine.exited.then((e) => {
    throw new SandboxError(`the VM stopped ${during} (engine exit ${e.signal ?? e.code}); see ${stateDir}/console.log`);
  });
}

export class Sandbox {
  readonly vm: Vm;
  readonly agent: AgentConnection;
  private readonly agentServer: net.Server;
  private readonly opts: Kept;
  private stopped?: Promise<void>;
  /** passt and the guest's eth0 (undefined: only lo) */
  private guestNet?: GuestNet;
  /** a claimed pooled VM's network before startNetwork() */
  private pendingNet?: { plan: NetworkPlan; wire: PasstWire; stateDir: string };
  get net(): GuestNet | undefined { return this.guestNet; }

  private constructor(vm: Vm, agent: AgentConnection, agentServer: net.Server, opts: Kept, guestNet: GuestNet | undefined) {
    this.vm = vm;
    this.guestNet = guestNet;
    this.agent = agent;
    this.agentServer = agentServer;
    this.opts = opts;
  }

  static async boot(opts: SandboxOptions): Promise<Sandbox> {
    const { bundle, log } = opts;
    const size = machineSize(bundle.spec);
    const { vsockBase, agentServer } = await Sandbox.listenAgent(opts.socketDir);
    let exports: BindExport[] = [];
    const plan = opts.setup ? setupSpec(bundle.spec, bundle.dir) : undefined;
    if (plan) exports = plan.exports;
    const devices: DeviceSpec[] = [
      { kind: 'fs', tag: ROOTFS_TAG, root: bundle.rootfs, readonly: false, keepCache: true },
      { kind: 'vsock', guestCid: GUEST_CID, udsPath: vsockBase },
    ];
    if (exports.length) {
      devices.push({ kind: 'fs', tag: BINDS_TAG, exports: exports.map((e) => ({ name: e.name, path: e.hostPath, readonly: e.readonly })) });
    }
    let vm: Vm | undefined;
    let guestNet: GuestNet | undefined;
    try {
      if (plan) {
        guestNet = await GuestNet.start(bundle.spec, opts.stateDir, log, (m) => opts.onNetworkLost?.(m)) ?? undefined;
        if (guestNet) devices.push(guestNet.device);
      }
      let engineGone: Promise<never>;
      let agent: AgentConnection;
      ({ vm, agent, engineGone } = await Sandbox.startVm(opts, agentServer, size, devices,
        { bindsTag: exports.length ? BINDS_TAG : undefined, bindsDir: GUEST_BINDS_DIR },
        // Once the VM is gone its net device closes passt's socket and passt quits: expected.
        (started) => void started.engine.exited.then(() => guestNet?.passt.expectExit())));
      // A passt that could not start (bad namespace, ports taken) fails create, like runc's network errors.
      if (guestNet?.lost) throw new SandboxError(guestNet.lost);
      const sb = new Sandbox(vm, agent, agentServer, opts, guestNet);
      if (guestNet) {
        const features = agent.hello.features ?? 0;
        if (features & FEATURE_NET) {
          plan!.setup.network = guestNet.setupFor(features);
          plan!.setup.sysctl = { ...GuestNet.sysctlsOf(guestNet.plan, size.memoryMiB), ...plan!.setup.sysctl };
        } else log('the guest agent cannot configure networking (FEATURES bit 3): eth0 stays down');
      }
      if (plan && agent.extended) await Promise.race([agent.setup(plan.setup), engineGone]);
      else if (plan) log('the guest agent lacks container set-up (extension A): mounts and hostname are the agent defaults');
      return sb;
    } catch (err) {
      if (vm) await vm.stop(0);
      await guestNet?.stop();
      agentServer.close();
      fs.rmSync(opts.socketDir, { recursive: true, force: true });
      throw err;
    }
  }

  private static async listenAgent(socketDir: string): Promise<{ vsockBase: string; agentServer: net.Server }> {
    fs.mkdirSync(socketDir, { recursive: true, mode: 0o700 });
    const vsockBase = path.join(socketDir, 'vsock');
    const agentServer = net.createServer();
    await new Promise<void>((resolve, reject) => {
      agentServer.once('error', reject);
      agentServer.listen(`${vsockBase}_${AGENT_PORT}`, resolve);
    });
    return { vsockBase, agentServer };
  }

  /**
   * Starts the VM and waits for its agent's HELLO. A VM whose agent does not
   * come is stopped here. `started` runs as soon as the VM exists.
   * `engineGone` rejects once the engine exits, for racing later requests.
   */
  private static async startVm(
    opts: Pick<SandboxOptions, 'stateDir' | 'socketDir' | 'log' | 'debug'>, agentServer: net.Server, size: MachineSize, devices: DeviceSpec[],
    cmdline: Pick<GuestCmdlineOptions, 'bindsTag' | 'bindsDir' | 'deferRoot'>, started?: (vm: Vm) => void,
  ): Promise<{ vm: Vm; agent: AgentConnection; engineGone: Promise<never> }> {
    const { log } = opts;
    const assets = guestAssets();
    const agentReady = AgentConnection.accept(agentServer, Number(process.env.HUSK_BOOT_TIMEOUT_MS ?? 120_000));
    const vm = Vm.start({
      stateDir: opts.socketDir,
      kernel: assets.kernel,
      initrd: assets.initrd,
      cmdline: guestCmdline({ rootfsTag: ROOTFS_TAG, agentPort: AGENT_PORT, debug: !!opts.debug, ...cmdline }),
      vcpus: size.vcpus,
      memoryMiB: size.memoryMiB,
      consoleLog: path.join(opts.stateDir, 'console.log'),
      devices,
    }, log);
    log(`engine ${vm.engine.name}: ${size.vcpus} vCPU, ${size.memoryMiB} MiB${cmdline.deferRoot ? ' (pooled)' : ''}`);
    started?.(vm);
    const gone = engineGone(vm, 'before its agent was ready', opts.stateDir);
    try {
      const agent = await Promise.race([agentReady, gone]);
      log(`agent ready: ${agent.hello.agent}, protocol ${agent.hello.version}, features ${agent.hello.features ?? 0}`);
      return { vm, agent, engineGone: gone };
    } catch (err) {
      await vm.stop(0);
      throw err;
    }
  }

  /**
   * A VM for the pool: booted to the agent's HELLO with no container yet. Its
   * file systems have no host directory and its network no passt until
   * claim(); the agent mounts nothing before the container's SETUP
   * (husk.defer_root).
   */
  static async bootPooled(opts: Omit<SandboxOptions, 'bundle' | 'setup'> & { size: MachineSize }): Promise<Sandbox> {
    const { vsockBase, agentServer } = await Sandbox.listenAgent(opts.socketDir);
    const devices: DeviceSpec[] = [];
    devices[POOLED.rootfs] = { kind: 'fs', tag: ROOTFS_TAG, deferred: true };
    devices[POOLED.vsock] = { kind: 'vsock', guestCid: GUEST_CID, udsPath: vsockBase };
    devices[POOLED.binds] = { kind: 'fs', tag: BINDS_TAG, deferred: true };
    devices[POOLED.net] = { kind: 'net', fd: -1, mac: POOLED_MAC, mtu: POOLED_MAX_MTU };
    let vm: Vm | undefined;
    try {
      let agent: AgentConnection;
      ({ vm, agent } = await Sandbox.startVm(opts, agentServer, opts.size, devices, { bindsTag: BINDS_TAG, bindsDir: GUEST_BINDS_DIR, deferRoot: true }));
      const features = agent.hello.features ?? 0;
      if (!(features & FEATURE_DEFER_ROOT) || !(features & FEATURE_NET) || !agent.extended) {
        throw new SandboxError('the guest agent cannot serve a pooled VM (FEATURES bits 0, 3 and 6 needed)');
      }
      return new Sandbox(vm, agent, agentServer, opts, undefined);
    } catch (err) {
      if (vm) await vm.stop(0);
      agentServer.close();
      fs.rmSync(opts.socketDir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Gives a pooled VM its container: the file systems get their host
   * directories, passt starts in the container's namespace and is attached,
   * and the agent mounts everything at SETUP. `netPlan`: GuestNet.plan()
   * of the bundle, which must have a network (a pooled VM has eth0).
   */
  async claim(bundle: Bundle, stateDir: string, netPlan: NetworkPlan, duringSetup?: () => void): Promise<void> {
    const { log } = this.opts;
    const plan = setupSpec(bundle.spec, bundle.dir);
    await this.vm.configureDevice(POOLED.rootfs, { kind: 'fs', root: bundle.rootfs, readonly: false, keepCache: true });
    await this.vm.configureDevice(POOLED.binds, { kind: 'fs', exports: plan.exports.map((e) => ({ name: e.name, path: e.hostPath, readonly: e.readonly })) });
    // The device gets its end of passt's socket now, passt itself comes with startNetwork():
    // what the guest sends meanwhile waits in the socket.
    const wire = Passt.wire(log);
    try {
      await this.vm.configureDevice(POOLED.net, { kind: 'net', fd: wire.deviceFd });
    } catch (err) {
      closeFd(wire.deviceFd);
      closeFd(wire.passtFd);
      throw err;
    }
    this.pendingNet = { plan: netPlan, wire, stateDir };
    plan.setup.network = GuestNet.setupOf(netPlan, this.agent.hello.features ?? 0);
    plan.setup.sysctl = { ...GuestNet.sysctlsOf(netPlan, this.vm.config.memoryMiB), ...plan.setup.sysctl };
    const done = Promise.race([this.agent.setup(plan.setup), engineGone(this.vm, 'during the container\'s set-up', this.opts.stateDir)]);
    done.catch(() => {});
    // Host work that can overlap the guest's (the caller's process spec).
    duringSetup?.();
    await done;
  }

  /**
   * Starts passt for a claimed VM. Apart from claim() because passt's start
   * (a socket per forwarded port: ~0.1 s of CPU) would compete with the
   * guest's SETUP and RUN: it runs once the container's process is created.
   * A passt that fails is reported through onNetworkLost, as one that dies later.
   */
  startNetwork(onNetworkLost: (msg: string) => void): void {
    const p = this.pendingNet;
    if (!p) return;
    this.pendingNet = undefined;
    try {
      const guestNet = GuestNet.startPlanned(p.plan, p.stateDir, this.opts.log, onNetworkLost, p.wire);
      this.guestNet = guestNet;
      void this.vm.engine.exited.then(() => guestNet.passt.expectExit());
    } catch (err) {
      const msg = `passt could not start: ${(err as Error).message}: the container has no network`;
      this.opts.log(msg);
      onNetworkLost(msg);
    }
  }

  /**
   * Powers the guest off (graceMs for it to go quietly), then stops everything and removes the sockets.
   * `waitNetwork` false: passt is signalled but not waited for (the detached VMM exits with the
   * container's status sooner; `delete` makes sure passt is gone).
   */
  stop(graceMs = 3000, waitNetwork = true): Promise<void> {
    this.stopped ??= (async () => {
      try { this.agent.poweroff(); } catch { /* agent gone */ }
      // passt closes one socket per forwarded port on its way out (tens of ms): let that
      // overlap the guest's power-off, the container no longer needs its network.
      const netStopped = this.net?.stop();
      if (this.pendingNet) closeFd(this.pendingNet.wire.passtFd); // passt never started
      this.pendingNet = undefined;
      await this.vm.stop(graceMs);
      if (waitNetwork) await netStopped;
      this.agent.close();
      this.agentServer.close();
      fs.rmSync(this.opts.socketDir, { recursive: true, force: true });
    })();
    return this.stopped;
  }
}
