// Reading a namespace (ip -j output) into the guest's eth0 configuration,
// the port policy, and the SETUP records the agent receives.
import { describe, expect, it } from 'vitest';
import { forwardedPorts, guestMac, networkNamespace, portCount, templateFrom } from '../../src/runtime/network.js';
import { ipBytes, encodeNetwork } from '../../src/agent/net-attrs.js';
import { TlvWriter, parseTlv, Tag } from '../../src/agent/protocol.js';
import { defaultSpec } from '../../src/oci/default-spec.js';
import { guestTcpRmem } from '../../src/runtime/guest-net.js';

const links = [
  { ifname: 'lo', link_type: 'loopback', flags: ['LOOPBACK', 'UP'], mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  { ifname: 'eth0', link_type: 'ether', flags: ['BROADCAST', 'UP', 'LOWER_UP'], mtu: 1500, address: '46:5e:8d:ab:e6:a2', addr_info: [
    { family: 'inet', local: '10.88.0.5', prefixlen: 16, scope: 'global' },
    { family: 'inet6', local: 'fd00::5', prefixlen: 64, scope: 'global' },
    { family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' },
  ] },
];
const r4 = [
  { dst: 'default', gateway: '10.88.0.1', dev: 'eth0' },
  { dst: '10.88.0.0/16', dev: 'eth0', protocol: 'kernel', scope: 'link' },
  { dst: '192.168.5.0/24', gateway: '10.88.0.9', dev: 'eth0' },
];
const r6 = [
  { dst: 'fd00::/64', dev: 'eth0', protocol: 'kernel' },
  { dst: 'fe80::/64', dev: 'eth0', protocol: 'kernel' },
  { dst: 'default', gateway: 'fe80::1', dev: 'eth0' },
];

describe('network plan', () => {
  it('copies the default-route interface: global addresses and non-kernel routes', () => {
    const t = templateFrom(links, r4, r6)!;
    expect(t.ifname).toBe('eth0');
    expect(t.addresses).toEqual([
      { family: 4, address: '10.88.0.5', prefix: 16 },
      { family: 6, address: 'fd00::5', prefix: 64 },
    ]);
    expect(t.routes).toEqual([
      { family: 4, dst: '0.0.0.0', prefix: 0, gateway: '10.88.0.1' },
      { family: 4, dst: '192.168.5.0', prefix: 24, gateway: '10.88.0.9' },
      { family: 6, dst: '::', prefix: 0, gateway: 'fe80::1' },
    ]);
  });

  it('a namespace with only lo (podman --network none) has no template', () => {
    expect(templateFrom([links[0]!], [], [])).toBeNull();
    // an interface that is down or has no global address does not count either
    expect(templateFrom([{ ...links[1]!, flags: ['BROADCAST'] }], r4, [])).toBeNull();
    expect(templateFrom([{ ...links[1]!, addr_info: [{ family: 'inet6', local: 'fe80::1', prefixlen: 64, scope: 'link' }] }], [], [])).toBeNull();
  });

  it('reads the network namespace entry like runc: path, new, or the host', () => {
    const spec = defaultSpec(['sh'], false);
    spec.linux!.namespaces = [{ type: 'network', path: '/run/netns/x' }];
    expect(networkNamespace(spec)).toEqual({ kind: 'path', path: '/run/netns/x' });
    spec.linux!.namespaces = [{ type: 'network' }];
    expect(networkNamespace(spec)).toEqual({ kind: 'new' });
    spec.linux!.namespaces = [{ type: 'pid' }];
    expect(networkNamespace(spec)).toEqual({ kind: 'host' });
  });

  it('forwards ports within the fd budget, none in the host namespace, and checks annotations', () => {
    expect(forwardedPorts(undefined, false, 17952)).toEqual({ tcp: '1-16383', udp: '1-1023' });
    expect(forwardedPorts(undefined, false, 8976)).toEqual({ tcp: '1-7953', udp: '1-1023' });
    expect(forwardedPorts(undefined, true)).toEqual({ tcp: 'none', udp: 'none' });
    expect(forwardedPorts({ 'husk.net.tcp-ports': '80,443,8000-8100', 'husk.net.udp-ports': 'none' }, false)).toEqual({ tcp: '80,443,8000-8100', udp: 'none' });
    expect(() => forwardedPorts({ 'husk.net.tcp-ports': '80; rm -rf /' }, false)).toThrow(/not a port list/);
    expect(() => forwardedPorts({ 'husk.net.udp-ports': 'all' }, false)).toThrow(/file descriptors/);
    expect(portCount('1-1023')).toBe(1023);
    expect(portCount('22,80:8080,1000-1009,~1005')).toBe(12);
  });

  it('makes a stable, locally administered unicast MAC per container', () => {
    const m = guestMac('abc');
    expect(m).toBe(guestMac('abc'));
    expect(m).not.toBe(guestMac('abd'));
    const first = parseInt(m.slice(0, 2), 16);
    expect(first & 1).toBe(0);
    expect(first & 2).toBe(2);
  });

  it('encodes NET_LINK, NET_ADDR and NET_ROUTE as fixed-size records', () => {
    expect([...ipBytes(4, '10.88.0.5').subarray(0, 4)]).toEqual([10, 88, 0, 5]);
    expect(Buffer.from(ipBytes(6, 'fd00::5')).toString('hex')).toBe('fd000000000000000000000000000005');
    expect(Buffer.from(ipBytes(6, '2001:db8:1::')).toString('hex')).toBe('20010db8000100000000000000000000');
    expect(() => ipBytes(4, '10.0.0.256')).toThrow();
    const w = new TlvWriter();
    const t = templateFrom(links, r4, r6)!;
    encodeNetwork(w, { mac: '02:00:00:00:00:01', mtu: 65520, addresses: t.addresses, routes: t.routes });
    const attrs = parseTlv(w.finish());
    expect(attrs.map((a) => [a.tag, a.value.byteLength])).toEqual([
      [Tag.NET_LINK, 12], [Tag.NET_ADDR, 20], [Tag.NET_ADDR, 20], [Tag.NET_ROUTE, 36], [Tag.NET_ROUTE, 36], [Tag.NET_ROUTE, 36],
    ]);
    expect(() => encodeNetwork(new TlvWriter(), { mac: '02:00:00:00:00:01', mtu: 1500, addresses: [{ family: 4, address: '1.2.3.4', prefix: 33 }], routes: [] })).toThrow(/prefix/);
  });

  it('sends NET_RTO_MIN right after NET_LINK (the agent puts it on the routes it adds next), only when asked', () => {
    const t = templateFrom(links, r4, r6)!;
    const w = new TlvWriter();
    encodeNetwork(w, { mac: '02:00:00:00:00:01', mtu: 65520, addresses: t.addresses, routes: t.routes, rtoMinMs: 10 });
    const attrs = parseTlv(w.finish());
    expect(attrs.map((a) => a.tag)).toEqual([Tag.NET_LINK, Tag.NET_RTO_MIN, Tag.NET_ADDR, Tag.NET_ADDR, Tag.NET_ROUTE, Tag.NET_ROUTE, Tag.NET_ROUTE]);
    expect(Buffer.from(attrs[1]!.value).readUInt32LE(0)).toBe(10);
    expect(attrs[1]!.value.byteLength).toBe(4);
    for (const bad of [0, 1001, 2.5, -1]) {
      expect(() => encodeNetwork(new TlvWriter(), { mac: '02:00:00:00:00:01', mtu: 1500, addresses: [], routes: [], rtoMinMs: bad })).toThrow(/minimum RTO/);
    }
  });

  it('lets a guest TCP socket buffer 1/64 of guest RAM for passt, within the namespace\'s limit and passt\'s window scale', () => {
    // 512 MiB: 8 MiB instead of the guest kernel's 4 MiB; the namespace allows 32 MiB.
    expect(guestTcpRmem(512, 32 << 20)).toBe(`4096 131072 ${8 << 20}`);
    // A namespace that allows less bounds it, as runc's container there would be bounded.
    expect(guestTcpRmem(512, 6 << 20)).toBe(`4096 131072 ${6 << 20}`);
    // Never a window scale above 8 (passt's limit), however large the guest.
    expect(guestTcpRmem(4096, undefined)).toBe(`4096 131072 ${65535 << 8}`);
    // Nothing to gain over the guest kernel's own default (1/128 of RAM, at most 6 MiB).
    expect(guestTcpRmem(512, 4 << 20)).toBeUndefined();
    expect(guestTcpRmem(128, undefined)).toBe(`4096 131072 ${2 << 20}`);
    expect(guestTcpRmem(128, 1 << 20)).toBeUndefined();
  });
});
