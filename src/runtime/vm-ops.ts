// The VMM daemon's side of pause, resume, update and stats: freezing the
// whole VM through its engine, and the container's cgroup in the guest
// through the agent (protocol extension C). The CLI verb holds the
// container lock while the daemon records the new status.
import type { Vm } from '../vmm/vm.js';
import type { AgentConnection } from '../agent/client.js';
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

  /** runc thaws a paused container for SIGKILL so that it dies; other signals wait for resume. */
  async beforeSignal(signo: number): Promise<void> {
    if (signo === 9 && this.ctx.status() === 'paused') await this.resume();
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
