// The guest's network for one sandbox: the plan read from the namespace,
// passt started in it, the virtio-net device that carries its frames and
// the SETUP attributes that configure eth0. A passt that dies while the
// VM runs is logged and reported (onLost), never ignored.
import path from 'node:path';
import type { Spec } from '../oci/spec.js';
import type { DeviceSpec } from '../vmm/devices/factory.js';
import type { GuestNetwork } from '../agent/net-attrs.js';
import { FEATURE_NET_RTO_MIN } from '../agent/protocol.js';
import { planNetwork, type NetworkPlan } from './network.js';
import { Passt, type PasstWire } from './passt.js';
import { joinNetworkNamespace } from '../sys/namespace.js';
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

  async stop(): Promise<void> {
    await this.passt.stop();
    if (this.portsLock !== null) closeFd(this.portsLock);
    this.portsLock = null;
  }
}
