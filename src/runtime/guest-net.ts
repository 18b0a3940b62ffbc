// The guest's network for one sandbox: the plan read from the namespace,
// passt started in it, the virtio-net device that carries its frames and
// the SETUP attributes that configure eth0. A passt that dies while the
// VM runs is logged and reported (onLost), never ignored.
import path from 'node:path';
import type { Spec } from '../oci/spec.js';
import type { DeviceSpec } from '../vmm/devices/factory.js';
import type { GuestNetwork } from '../agent/net-attrs.js';
import { planNetwork, type NetworkPlan } from './network.js';
import { Passt } from './passt.js';

export class GuestNet {
  readonly plan: NetworkPlan;
  readonly passt: Passt;
  /** set when passt exited on its own (why, for the error message) */
  lost?: string;

  private constructor(plan: NetworkPlan, passt: Passt) {
    this.plan = plan;
    this.passt = passt;
  }

  /** null: the guest gets only lo (no network device, no passt). */
  static async start(spec: Spec, stateDir: string, log: (msg: string) => void, onLost: (msg: string) => void): Promise<GuestNet | null> {
    const plan = await planNetwork(spec, path.basename(stateDir));
    if (!plan) {
      log('network: no interface to copy: the guest has only lo');
      return null;
    }
    const passt = Passt.start(plan, path.join(stateDir, 'passt.log'), log);
    const gn = new GuestNet(plan, passt);
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

  get setup(): GuestNetwork {
    return { mac: this.plan.mac, mtu: this.plan.mtu, addresses: this.plan.addresses, routes: this.plan.routes };
  }

  async stop(): Promise<void> {
    await this.passt.stop();
  }
}
