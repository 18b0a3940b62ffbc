// SETUP's networking attributes (docs/agent-protocol.md, "Networking"):
// eth0's MAC and MTU, its addresses and routes, as fixed-size binary
// records the agent can check without parsing text.
import net from 'node:net';
import { ProtocolError, Tag, type TlvWriter } from './protocol.js';

export interface GuestNetwork {
  mac: string;
  mtu: number;
  addresses: { family: 4 | 6; address: string; prefix: number }[];
  routes: { family: 4 | 6; dst: string; prefix: number; gateway?: string }[];
  /** TCP's minimum retransmission timeout on every route of eth0, ms (only for an agent with FEATURE_NET_RTO_MIN) */
  rtoMinMs?: number;
}

/** The agent's bounds for NET_RTO_MIN. */
export const RTO_MIN_RANGE_MS = [1, 1000] as const;

/** 16 bytes: an IPv4 address in the first 4, an IPv6 address in all 16. */
export function ipBytes(family: 4 | 6, addr: string): Uint8Array {
  const out = new Uint8Array(16);
  if (family === 4) {
    if (!net.isIPv4(addr)) throw new ProtocolError(`not an IPv4 address: ${addr}`);
    addr.split('.').forEach((p, i) => { out[i] = Number(p); });
    return out;
  }
  if (!net.isIPv6(addr) || addr.includes('%')) throw new ProtocolError(`not an IPv6 address: ${addr}`);
  const sl = addr.toLowerCase();
  let groups: string[];
  if (sl.includes('::')) {
    const [head, tail] = sl.split('::') as [string, string];
    const h = head ? head.split(':') : [];
    const t = tail ? tail.split(':') : [];
    groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  } else groups = sl.split(':');
  if (groups.length === 8 && groups[7]!.includes('.')) throw new ProtocolError(`IPv4-mapped addresses are not supported: ${addr}`);
  if (groups.length !== 8) throw new ProtocolError(`bad IPv6 address ${addr}`);
  groups.forEach((g, i) => { const n = parseInt(g, 16); out[2 * i] = n >> 8; out[2 * i + 1] = n & 0xff; });
  return out;
}

function macBytes(mac: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new ProtocolError(`bad MAC ${mac}`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export function encodeNetwork(w: TlvWriter, n: GuestNetwork): void {
  const link = new Uint8Array(12);
  new DataView(link.buffer).setUint32(0, n.mtu >>> 0, true);
  link.set(macBytes(n.mac), 4);
  w.bytes(Tag.NET_LINK, link);
  if (n.rtoMinMs !== undefined) {
    // Before the addresses and routes: the agent puts it on each of them as they are added.
    if (!Number.isInteger(n.rtoMinMs) || n.rtoMinMs < RTO_MIN_RANGE_MS[0] || n.rtoMinMs > RTO_MIN_RANGE_MS[1]) throw new ProtocolError(`bad minimum RTO ${n.rtoMinMs} ms`);
    w.u32(Tag.NET_RTO_MIN, n.rtoMinMs);
  }
  for (const a of n.addresses) {
    const maxPrefix = a.family === 4 ? 32 : 128;
    if (!Number.isInteger(a.prefix) || a.prefix < 0 || a.prefix > maxPrefix) throw new ProtocolError(`bad prefix /${a.prefix}`);
    const rec = new Uint8Array(20);
    rec[0] = a.family; rec[1] = a.prefix;
    rec.set(ipBytes(a.family, a.address), 4);
    w.bytes(Tag.NET_ADDR, rec);
  }
  for (const r of n.routes) {
    const maxPrefix = r.family === 4 ? 32 : 128;
    if (!Number.isInteger(r.prefix) || r.prefix < 0 || r.prefix > maxPrefix) throw new ProtocolError(`bad prefix /${r.prefix}`);
    const rec = new Uint8Array(36);
    rec[0] = r.family; rec[1] = r.prefix; rec[2] = r.gateway ? 1 : 0;
    rec.set(ipBytes(r.family, r.dst), 4);
    if (r.gateway) rec.set(ipBytes(r.family, r.gateway), 20);
    w.bytes(Tag.NET_ROUTE, rec);
  }
}
