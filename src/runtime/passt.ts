// passt, the other end of the guest's virtio-net: started inside the
// container's network namespace on one end of a socketpair (`--fd`), it
// turns the guest's frames into ordinary sockets of that namespace and
// forwards inbound ports to the guest. Its lifetime is the VM's: `-1`
// makes it quit when the device's end of the socket closes (also when
// husk is SIGKILLed), and stop() kills it and waits.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { setSendBuffer, socketPair } from '../sys/unix-socket.js';
import { closeFd } from '../sys/io.js';
import { nofileHardLimit, type NetworkPlan } from './network.js';

export const PASST_BINARY = process.env.HUSK_PASST ?? 'passt';
/** passt drops to this user after opening its sockets (it refuses to stay root). */
const PASST_USER = '65534:65534';
/**
 * Send buffer of both ends of the socketpair. passt writes frames to its end
 * without blocking and drops every frame that does not fit (TCP then stalls
 * until passt retransmits, seconds later): its end must hold a whole TCP
 * window for the guest (tcp_rmem max, ~4 MiB) while the guest is slow to
 * post buffers. The default (~200 KiB) holds three 64 KiB frames.
 */
const STREAM_SNDBUF = 8 << 20;

export interface PasstExit { code: number | null; signal: NodeJS.Signals | null }

/** Both ends of the device-passt socketpair (passt gets passtFd as its fd 3). */
export interface PasstWire { deviceFd: number; passtFd: number }

export class Passt {
  readonly pid: number;
  /** the device's end of the socketpair: hand it to the net device (which then owns it) */
  readonly deviceFd: number;
  readonly exited: Promise<PasstExit>;
  private readonly child: ChildProcess;
  private stopping = false;

  private constructor(child: ChildProcess, deviceFd: number, exited: Promise<PasstExit>) {
    this.child = child;
    this.pid = child.pid ?? -1;
    this.deviceFd = deviceFd;
    this.exited = exited;
  }

  /** The command line (without the fd plumbing), for logs and tests. */
  static args(plan: NetworkPlan, fdInChild: number): string[] {
    return [
      '-f', '-q', '-1', ...(process.env.HUSK_PASST_PCAP ? ['-p', process.env.HUSK_PASST_PCAP] : []), '--runas', PASST_USER, '--fd', String(fdInChild),
      '-i', plan.ifname,
      // Without this passt answers for the gateway's address itself (as the namespace's
      // loopback): a host server on the bridge gateway, or aardvark-dns there, would be unreachable.
      '--no-map-gw',
      '-m', String(plan.mtu),
      '-t', plan.tcpPorts, '-u', plan.udpPorts,
    ];
  }

  /**
   * The socketpair between the net device and passt. Made ahead of passt
   * when the device must carry frames before passt runs: they wait in the
   * socket until passt reads them.
   */
  static wire(log: (msg: string) => void): PasstWire {
    const [deviceFd, passtFd] = socketPair();
    try {
      setSendBuffer(passtFd, STREAM_SNDBUF);
      setSendBuffer(deviceFd, STREAM_SNDBUF);
    } catch (err) {
      // Slower (frames dropped under load), not broken: go on with the default buffers.
      log(`passt: socket buffers stay at their default: ${(err as Error).message}`);
    }
    return { deviceFd, passtFd };
  }

  static start(plan: NetworkPlan, logFile: string, log: (msg: string) => void, wire: PasstWire = Passt.wire(log)): Passt {
    const { deviceFd, passtFd } = wire;
    const hard = nofileHardLimit();
    // setpriv: killed with husk until passt's own -1 takes over; prlimit: one fd per
    // forwarded port; nsenter: the container's namespace (nothing for the host's).
    const argv = [
      '--pdeathsig', 'SIGKILL', '--',
      'prlimit', `--nofile=${hard}:${hard}`, '--',
      ...(plan.netnsPath ? ['nsenter', `--net=${plan.netnsPath}`, '--'] : []),
      PASST_BINARY, ...Passt.args(plan, 3),
    ];
    const logFd = fs.openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn('setpriv', argv, { stdio: ['ignore', logFd, logFd, passtFd], detached: false });
    } catch (err) {
      closeFd(deviceFd);
      throw err;
    } finally {
      fs.closeSync(logFd);
      closeFd(passtFd); // passt has its copy as fd 3
    }
    const exited = new Promise<PasstExit>((resolve) => {
      child.on('exit', (code, signal) => resolve({ code, signal }));
      child.on('error', (err) => { log(`passt: ${err.message}`); resolve({ code: 127, signal: null }); });
    });
    const p = new Passt(child, deviceFd, exited);
    log(`passt ${p.pid}: ${plan.netnsPath ?? "husk's network namespace"}, ${plan.ifname}, tcp ${plan.tcpPorts}, udp ${plan.udpPorts}`);
    return p;
  }

  /** True once stop() or expectExit() was called: an exit after that is expected. */
  get stopped(): boolean { return this.stopping; }

  /** The VM is going away: passt will see its socket close and quit (-1); that is no failure. */
  expectExit(): void { this.stopping = true; }

  async stop(graceMs = 2000): Promise<PasstExit> {
    this.stopping = true;
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      const e = await this.exited;
      clearTimeout(t);
      return e;
    }
    return this.exited;
  }
}
