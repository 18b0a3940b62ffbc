// The VMM's side (detached daemon or foreground `run`) of kill, ps, pause,
// resume, update and stats: signals and process lists through the agent's
// pid namespace (extension B), freezing the whole VM through its engine, and
// the container's cgroup in the guest (extension C). The CLI verb holds the
// container lock while the VMM records the new status.
import type { Vm } from '../vmm/vm.js';
import type { AgentConnection, RunningProcess } from '../agent/client.js';
import { FEATURE_CGROUP, MsgType } from '../agent/protocol.js';
import type { LinuxResources } from '../oci/spec.js';
import type { ControlReply } from './control.js';
import type { Status } from './state.js';
import { encodeResources, parseStatFiles, runcStats, oomKills } from './guest-cgroup.js';

export interface VmOpsContext {
  status(): Status;
  setStatus(s: Status): void;
  vm: Vm;
  agent: AgentConnection;
  log(msg: string): void;
}

export type VmOpRequest =
  | { op: 'pause' }
  | { op: 'resume' }
  | { op: 'update'; resources: LinuxResources }
  | { op: 'stats' };

export class VmOps {
  private readonly ctx: VmOpsContext;
  /** what `resume` returns to (runc lets a created container be paused too) */
  private pausedFrom: Status = 'running';
  private engineGone = false;

  constructor(ctx: VmOpsContext) {
    this.ctx = ctx;
    void ctx.vm.engine.exited.then(() => { this.engineGone = true; });
  }

  async handle(req: VmOpRequest): Promise<ControlReply> {
    try {
      return await this.op(req);
    } catch (err) {
      // The VM ended under us (the container exited meanwhile): say it like runc.
      if (this.engineGone) return { ok: false, error: 'container not running' };
      throw err;
    }
  }

  private async op(req: VmOpRequest): Promise<ControlReply> {
    const { ctx } = this;
    const status = ctx.status();
    switch (req.op) {
      case 'pause': {
        if (status !== 'running' && status !== 'created') return { ok: false, error: 'container not running' };
        await ctx.vm.engine.pause();
        this.pausedFrom = status;
        ctx.setStatus('paused');
        ctx.log(`paused (${ctx.vm.engine.name})`);
        return { ok: true };
      }
      case 'resume':
        if (status !== 'paused') return { ok: false, error: 'container not paused' };
        await this.resume();
        return { ok: true };
      case 'update': {
        if (status === 'paused') return { ok: false, error: 'cannot update a paused container: its VM is frozen; resume it first' };
        this.needCgroup();
        const attrs = encodeResources(req.resources, { update: true, vmMemoryMiB: ctx.vm.config.memoryMiB });
        if (attrs.byteLength) await ctx.agent.request(MsgType.UPDATE, attrs);
        return { ok: true };
      }
      case 'stats': {
        if (status === 'paused') return { ok: false, error: 'container is paused: its VM is frozen' };
        this.needCgroup();
        const files = parseStatFiles(await ctx.agent.request(MsgType.STATS));
        return { ok: true, stats: runcStats(files), oomKills: oomKills(files) };
      }
    }
  }

  /**
   * `kill [--all]`. runc thaws a paused container for SIGKILL so that it dies;
   * other signals wait for resume. --all reaches every process of the
   * container's pid namespace (extension B); otherwise the init alone.
   */
  async signal(init: RunningProcess, signo: number, all: boolean): Promise<ControlReply> {
    const { agent } = this.ctx;
    if (signo === 9 && this.ctx.status() === 'paused') await this.resume();
    const status = this.ctx.status();
    if (all && agent.execCapable && (status === 'running' || status === 'paused')) {
      // A frozen guest answers only after resume: the signal is queued like runc's for frozen processes.
      if (status === 'paused') { agent.ps(signo).catch(() => {}); return { ok: true }; }
      try { await agent.ps(signo); return { ok: true }; } catch { /* no namespace (yet): the init alone */ }
    }
    init.signal(signo);
    return { ok: true };
  }

  /** `ps`: the processes of the container's pid namespace. */
  async ps(): Promise<ControlReply> {
    const { agent } = this.ctx;
    const status = this.ctx.status();
    if (!agent.execCapable) return { ok: false, error: 'the guest agent cannot list processes (no protocol extension B)' };
    if (status !== 'running' && status !== 'created') return { ok: false, error: `cannot ps a container that is ${status}` };
    return { ok: true, processes: await agent.ps() };
  }

  private async resume(): Promise<void> {
    await this.ctx.vm.engine.resume();
    this.ctx.setStatus(this.pausedFrom);
    this.ctx.log('resumed');
  }

  private needCgroup(): void {
    if (((this.ctx.agent.hello.features ?? 0) & FEATURE_CGROUP) === 0) {
      throw new Error('the guest agent has no container cgroup (extension C): rebuild native/agent');
    }
  }
}
