// The container's network as config.json describes it, turned into what
// the guest needs: which namespace passt serves, the addresses, routes and
// MTU the agent gives eth0, and which inbound ports passt forwards.
//
// Meaning of config.json's linux.namespaces "network" entry:
//  - with a path (podman, CNI/netavark, `ip netns`): that namespace. Its
//    interface with the default route (else its first interface with an
//    address) is the template: the guest's eth0 gets the same addresses and
//    routes, and passt, started inside that namespace, carries the traffic.
//  - without a path (runc: "a new, empty namespace"): a namespace with only
//    lo, so the guest gets only lo.
//  - no entry (runc: the host's namespace): passt runs in husk's own
//    namespace, so the guest gets the host's address and routes and reaches
//    what the host reaches; no inbound ports by default (binding them would
//    take them away from the host's own services).
// A namespace with no usable interface (podman's --network none) gives the
// guest no network device at all: only lo, as with runc.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import type { Spec } from '../oci/spec.js';

export class NetworkError extends Error {}

export type Family = 4 | 6;
export interface NetAddress { family: Family; address: string; prefix: number }
export interface NetRoute { family: Family; dst: string; prefix: number; gateway?: string }

export interface NetworkPlan {
  /** namespace passt runs in; undefined = husk's own (the host's) */
  netnsPath?: string;
  /** the template interface in that namespace */
  ifname: string;
  /** the guest's MAC (locally administered, stable per container) */
  mac: string;
  mtu: number;
  addresses: NetAddress[];
  routes: NetRoute[];
  /** passt -t / -u port specifications */
  tcpPorts: string;
  udpPorts: string;
}

/** passt's largest MTU (65535 minus the Ethernet header, rounded down to 32-bit words). */
export const GUEST_MTU = 65520;
const MAX_ADDRESSES = 32;
const MAX_ROUTES = 64;
/** Default inbound forwarding in a container namespace: every port a service commonly uses. */
const DEFAULT_TCP_TOP = 16383;
const DEFAULT_UDP_PORTS = '1-1023';
/** File descriptors passt keeps free for connections beyond its listening sockets. */
const FD_HEADROOM = 2048;

type NsChoice = { kind: 'host' } | { kind: 'new' } | { kind: 'path'; path: string };

export function networkNamespace(spec: Spec): NsChoice {
  const ns = (spec.linux?.namespaces ?? []).find((n) => n.type === 'network');
  if (!ns) return { kind: 'host' };
  if (!ns.path) return { kind: 'new' };
  return { kind: 'path', path: ns.path };
}

/** Runs `ip -j ARGS` in the namespace (husk's own when path is undefined). */
function ipJson(netnsPath: string | undefined, args: string[]): Promise<unknown[]> {
  const [cmd, argv] = netnsPath
    ? ['nsenter', [`--net=${netnsPath}`, '--', 'ip', '-j', ...args]]
    : ['ip', ['-j', ...args]];
  return new Promise((resolve, reject) => {
    execFile(cmd, argv, { encoding: 'utf8', timeout: 10_000 }, (err, out, stderr) => {
      if (err) {
        reject(new NetworkError(`reading the network namespace${netnsPath ? ` ${netnsPath}` : ''}: ${(stderr || err.message).trim().split('\n')[0]}`));
        return;
      }
      try {
        const parsed: unknown = out.trim() ? JSON.parse(out) : [];
        resolve(Array.isArray(parsed) ? parsed : []);
      } catch (e) {
        reject(e);
      }
    });
  });
}

interface IpLink { ifname?: string; flags?: string[]; mtu?: number; address?: string; link_type?: string; addr_info?: { family?: string; local?: string; prefixlen?: number; scope?: string }[] }
interface IpRoute { dst?: string; gateway?: string; dev?: string; protocol?: string; type?: string }

/** What `ip` shows of one namespace, reduced to the template interface. */
export async function readNamespace(netnsPath: string | undefined): Promise<Omit<NetworkPlan, 'mac' | 'tcpPorts' | 'udpPorts' | 'mtu' | 'netnsPath'> & { mtu: number } | null> {
  // In parallel: create waits for this before the VM can start.
  const [links, routes4, routes6] = await Promise.all([
    ipJson(netnsPath, ['addr', 'show']) as Promise<IpLink[]>,
    ipJson(netnsPath, ['-4', 'route', 'show', 'table', 'main']) as Promise<IpRoute[]>,
    ipJson(netnsPath, ['-6', 'route', 'show', 'table', 'main']) as Promise<IpRoute[]>,
  ]);
  return templateFrom(links, routes4, routes6);
}

/** Picks the template interface and the addresses and routes the guest copies (pure: unit-tested). */
export function templateFrom(links: IpLink[], routes4: IpRoute[], routes6: IpRoute[]) {
  const usable = links.filter((l) => l.ifname && l.link_type !== 'loopback' && (l.flags ?? []).includes('UP'));
  const addrsOf = (l: IpLink): NetAddress[] => (l.addr_info ?? [])
    .filter((a) => a.scope === 'global' && typeof a.local === 'string' && Number.isInteger(a.prefixlen))
    .filter((a) => a.family === 'inet' || a.family === 'inet6')
    .map((a) => ({ family: (a.family === 'inet' ? 4 : 6) as Family, address: a.local!, prefix: a.prefixlen! }));
  const defaultDev = [...routes4, ...routes6].find((r) => r.dst === 'default' && r.dev)?.dev;
  const link = usable.find((l) => l.ifname === defaultDev) ?? usable.find((l) => addrsOf(l).length > 0);
  if (!link) return null;
  const addresses = addrsOf(link).slice(0, MAX_ADDRESSES);
  if (!addresses.length) return null;
  const routes: NetRoute[] = [];
  for (const [family, list] of [[4, routes4], [6, routes6]] as const) {
    for (const r of list) {
      if (r.dev !== link.ifname || !r.dst || (r.type && r.type !== 'unicast')) continue;
      // The kernel adds prefix routes for the addresses itself, in the guest too.
      if (r.protocol === 'kernel' && !r.gateway) continue;
      const [dst, len] = r.dst === 'default' ? [family === 4 ? '0.0.0.0' : '::', 0] : splitPrefix(r.dst, family);
      if (family === 6 && dst.toLowerCase().startsWith('fe80:') && len >= 10) continue;
      routes.push(r.gateway ? { family, dst, prefix: len, gateway: r.gateway } : { family, dst, prefix: len });
    }
  }
  // Routes to a gateway need the gateway's own route first.
  routes.sort((a, b) => Number(!!a.gateway) - Number(!!b.gateway));
  return { ifname: link.ifname!, mtu: link.mtu ?? 1500, addresses, routes: routes.slice(0, MAX_ROUTES) };
}

function splitPrefix(dst: string, family: Family): [string, number] {
  const [a, l] = dst.split('/');
  return [a!, l === undefined ? (family === 4 ? 32 : 128) : Number(l)];
}

/** A stable, locally administered unicast MAC for the container's eth0. */
export function guestMac(id: string): string {
  const h = createHash('sha256').update(`husk-net:${id}`).digest();
  h[0] = (h[0]! & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

const PORT_SPEC = /^(none|all|~?\d{1,5}(-\d{1,5})?(:\d{1,5}(-\d{1,5})?)?(,~?\d{1,5}(-\d{1,5})?(:\d{1,5}(-\d{1,5})?)?)*)$/;

/**
 * The inbound ports passt forwards: annotations `husk.net.tcp-ports` /
 * `husk.net.udp-ports` (passt's syntax), else the defaults: UDP 1-1023 and
 * TCP from 1 up to what `socketBudget` (listening sockets per IP family) allows,
 * at most 16383. In the host's namespace: none.
 */
export function forwardedPorts(annotations: Record<string, string> | undefined, host: boolean, socketBudget = Infinity): { tcp: string; udp: string } {
  const pick = (key: string, dflt: string) => {
    const v = annotations?.[key];
    if (v === undefined) return dflt;
    if (!PORT_SPEC.test(v)) throw new NetworkError(`annotation ${key}: "${v}" is not a port list like 80,443,8000-8100 or none`);
    if (v === 'all') throw new NetworkError(`annotation ${key}: "all" needs more file descriptors than a process may have here; list the ports`);
    return v;
  };
  const udp = pick('husk.net.udp-ports', host ? 'none' : DEFAULT_UDP_PORTS);
  const tcpTop = Math.min(DEFAULT_TCP_TOP, Math.floor(socketBudget - portCount(udp)));
  const tcp = pick('husk.net.tcp-ports', host || tcpTop < 1 ? 'none' : `1-${tcpTop}`);
  return { tcp, udp };
}

/** How many sockets a port spec makes passt bind (upper bound, per IP family). */
export function portCount(spec: string): number {
  if (spec === 'none') return 0;
  let n = 0;
  for (const part of spec.split(',')) {
    if (part.startsWith('~')) continue;
    const [a, b] = part.split(':')[0]!.split('-').map(Number);
    n += b === undefined ? 1 : Math.max(0, b - a! + 1);
  }
  return n;
}

/** The hard RLIMIT_NOFILE of this process (passt needs one fd per forwarded port and family). */
export function nofileHardLimit(): number {
  try {
    const m = /^Max open files\s+\S+\s+(\S+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m?.[1] === 'unlimited' ? 1 << 20 : Number(m?.[1] ?? 1024);
  } catch {
    return 1024;
  }
}

/** The guest's network, or null when it gets only lo. */
export async function planNetwork(spec: Spec, id: string): Promise<NetworkPlan | null> {
  const ns = networkNamespace(spec);
  if (ns.kind === 'new') return null;
  const netnsPath = ns.kind === 'path' ? ns.path : undefined;
  if (netnsPath && !fs.existsSync(netnsPath)) throw new NetworkError(`network namespace ${netnsPath} does not exist`);
  const t = await readNamespace(netnsPath);
  if (!t) return null;
  const families = new Set(t.addresses.map((a) => a.family)).size;
  const ports = forwardedPorts(spec.annotations, !netnsPath, (nofileHardLimit() - FD_HEADROOM) / families);
  const sockets = (portCount(ports.tcp) + portCount(ports.udp)) * families;
  if (sockets + FD_HEADROOM > nofileHardLimit()) {
    throw new NetworkError(`forwarding ${sockets} ports needs more file descriptors than the limit of ${nofileHardLimit()}; narrow husk.net.tcp-ports / husk.net.udp-ports`);
  }
  return {
    ...(netnsPath ? { netnsPath } : {}),
    ifname: t.ifname,
    mac: guestMac(id),
    mtu: GUEST_MTU,
    addresses: t.addresses,
    routes: t.routes,
    tcpPorts: ports.tcp,
    udpPorts: ports.udp,
  };
}
