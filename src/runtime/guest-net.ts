// The guest's network for one sandbox: the plan read from the namespace,
// passt started in it, the virtio-net device that carries its frames and
// the SETUP attributes that configure eth0. A passt that dies while the
// VM runs is logged and reported (onLost), never ignored.
import fs from 'node:fs';
import path from 'node:path';
import type { Spec } from '../oci/spec.js';
import type { DeviceSpec } from '../vmm/devices/factory.js';
import type { GuestNetwork } from '../agent/net-attrs.js';
import { FEATURE_NET_RTO_MIN } from '../agent/protocol.js';
import { planNetwork, type NetworkPlan } from './network.js';
import { Passt, type PasstWire } from './passt.js';
import { inNetworkNamespace, joinNetworkNamespace } from '../sys/namespace.js';
import { bindAbstract } from '../sys/unix-socket.js';
import { closeFd } from '../sys/io.js';

/**
 * TCP's minimum retransmission timeout in the guest (Linux: 200 ms). The
 * guest's only TCP peer is passt on this host; passt acknowledges only what
 * its host socket took, so a guest that sends faster than the host side
 * drains has segments to resend, and each such loss stalled the connection
 * for 200 ms. Not lower: passt delays its ACKs by up to 50 ms (ACK_INTERVAL)
 * when nothing else is due, and a shorter timeout resends data passt has
 * (10 ms did, and a half-closed connection then never saw passt's FIN).
 */
export const GUEST_RTO_MIN_MS = 100;

/**
 * One guest TCP socket's receive buffer may grow to 1/64 of guest RAM (the
 * guest kernel's default is 1/128, so 4 MiB for 512 MiB), never beyond what
 * the container's namespace allows its own sockets (what it would get with
 * runc), nor beyond a window scale of 8 (passt's largest). passt sends the
 * guest no more than the guest's receive window and then waits for its
 * acknowledgement: each round trip through passt, the device and the
 * emulated guest costs milliseconds, and the default window (~2 MiB) makes
 * host -> container transfers ping-pong in ~1 MiB rounds.
 * (A FIN that passt never passed on was once blamed on these larger
 * buffers. It is passt's own: once the guest has half-closed, passt (as
 * packaged) no longer consumes acknowledged data from its socket, so it
 * never reads the peer's EOF, whatever the window; the default buffers
 * show it too.)
 */
const RCVBUF_RAM_SHARE = 64;
/** The largest buffer whose window still fits TCP window scale 8 (passt's MAX_WS). */
const RCVBUF_MAX = 65535 << 8;
/** The guest kernel's own tcp_rmem minimum and initial size, kept. */
const TCP_RMEM_MIN_DEFAULT = '4096 131072';

/** The largest TCP receive buffer of a network namespace (this thread's when no path), or undefined. */
function namespaceRmemMax(netnsPath: string | undefined): number | undefined {
  const read = () => Number(fs.readFileSync('/proc/sys/net/ipv4/tcp_rmem', 'utf8').trim().split(/\s+/)[2]);
  try {
    const max = netnsPath ? inNetworkNamespace(netnsPath, read) : read();
    return Number.isSafeInteger(max) && max > 0 ? max : undefined;
  } catch {
    return undefined;
  }
}

/** The guest's net.ipv4.tcp_rmem for `memoryMiB` of RAM, or undefined when the guest's default is as large. */
export function guestTcpRmem(memoryMiB: number, namespaceMax: number | undefined): string | undefined {
  const max = Math.min(Math.floor((memoryMiB * 1024 * 1024) / RCVBUF_RAM_SHARE), namespaceMax ?? Infinity, RCVBUF_MAX);
  // The guest kernel's default for this much RAM (1/128 of it, at most 6 MiB): nothing to gain below it.
  const guestDefault = Math.min(Math.floor((memoryMiB * 1024 * 1024) / 128), 6 << 20);
  return max > guestDefault ? `${TCP_RMEM_MIN_DEFAULT} ${max}` : undefined;
}

/** Held (in the namespace) by the one VMM whose passt forwards the namespace's inbound ports. */
const INBOUND_PORTS_LOCK = 'husk-inbound-ports';

export class GuestNet {
  readonly plan: NetworkPlan;
  readonly passt: Passt;
  /** set when passt exited on its own (why, for the error message) */
  lost?: string;

  private portsLock: number | null;

  private constructor(plan: NetworkPlan, passt: Passt, portsLock: number | null) {
    this.plan = plan;
    this.passt = passt;
    this.portsLock = portsLock;
  }

  /** null: the guest gets only lo (no network device, no passt). */
  static async start(spec: Spec, stateDir: string, log: (msg: string) => void, onLost: (msg: string) => void): Promise<GuestNet | null> {
    const plan = await GuestNet.plan(spec, stateDir, log);
    return plan ? GuestNet.startPlanned(plan, stateDir, log, onLost) : null;
  }

  /** What the namespace holds for the guest; null: only lo. */
  static async plan(spec: Spec, stateDir: string, log: (msg: string) => void): Promise<NetworkPlan | null> {
    const plan = await planNetwork(spec, path.basename(stateDir));
    if (!plan) log('network: no interface to copy: the guest has only lo');
    return plan;
  }

  static startPlanned(plan: NetworkPlan, stateDir: string, log: (msg: string) => void, onLost: (msg: string) => void, wire?: PasstWire): GuestNet {
    let portsLock: number | null = null;
    if (plan.netnsPath) {
      // This process stands for the container on the host, like runc's container
      // process: `--network container:ID` and pods name /proc/PID/ns/net of it, which
      // must be the container's namespace, never the host's.
      joinNetworkNamespace(plan.netnsPath);
      // A second VM in the namespace (a pod, `--network container:ID`) cannot listen
      // on the ports the first one's passt holds: it gets outbound traffic only.
      portsLock = bindAbstract(INBOUND_PORTS_LOCK);
      if (portsLock === null) {
        plan = { ...plan, tcpPorts: 'none', udpPorts: 'none' };
        log('network: another husk container forwards this namespace\'s inbound ports; this one gets outbound traffic only');
      }
    }
    let passt: Passt;
    try {
      passt = Passt.start(plan, path.join(stateDir, 'passt.log'), log, wire);
    } catch (err) {
      if (portsLock !== null) closeFd(portsLock);
      throw err;
    }
    const gn = new GuestNet(plan, passt, portsLock);
    void passt.exited.then((e) => {
      if (passt.stopped) return;
      const msg = `passt (pid ${passt.pid}) exited (${e.signal ?? `status ${e.code}`}): the container has no network; see ${path.join(stateDir, 'passt.log')}`;
      gn.lost = msg;
      log(msg);
      try { onLost(msg); } catch (err) { log(`recording the lost network: ${(err as Error).message}`); }
    });
    log(`network: eth0 ${plan.addresses.map((a) => `${a.address}/${a.prefix}`).join(' ')} mtu ${plan.mtu}, ${plan.routes.length} routes`);
    return gn;
  }

  get device(): DeviceSpec {
    return { kind: 'net', fd: this.passt.deviceFd, mac: this.plan.mac, mtu: this.plan.mtu };
  }

  /** eth0's configuration for an agent with these FEATURES bits. */
  setupFor(features: number): GuestNetwork {
    return GuestNet.setupOf(this.plan, features);
  }

  static setupOf(plan: NetworkPlan, features: number): GuestNetwork {
    const n: GuestNetwork = { mac: plan.mac, mtu: plan.mtu, addresses: plan.addresses, routes: plan.routes };
    if (features & FEATURE_NET_RTO_MIN) n.rtoMinMs = GUEST_RTO_MIN_MS;
    return n;
  }

  /** Guest sysctls that serve passt's TCP better; the container's own sysctls override them. */
  static sysctlsOf(plan: NetworkPlan, memoryMiB: number): Record<string, string> {
    const rmem = guestTcpRmem(memoryMiB, namespaceRmemMax(plan.netnsPath));
    return rmem ? { 'net.ipv4.tcp_rmem': rmem } : {};
  }

  async stop(): Promise<void> {
    await this.passt.stop();
    if (this.portsLock !== null) closeFd(this.portsLock);
    this.portsLock = null;
  }
}
