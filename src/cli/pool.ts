// `husk pool`: the pool of pre-booted VMs for a state root (off until a size
// is set), and the hidden verbs its processes run: `pool-vm` (a pool entry)
// and `vmm-thin` (the pid of a container on a pooled VM).
import type { Command } from 'commander';
import { globalOptions } from './main.js';

function count(name: string, max: number) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) > max) throw new Error(`invalid ${name}: ${v} (0-${max})`);
    return Number(v);
  };
}

export function registerPool(program: Command): void {
  const pool = program
    .command('pool')
    .description('keep VMs booted ahead of `create` (a container of the default size with a network starts on one)');
  pool
    .command('status')
    .description('print the pool\'s size and entries as JSON')
    .action(async (_o: unknown, cmd: Command) => {
      const { poolStatus } = await import('../runtime/pool/pool-admin.js');
      process.stdout.write(JSON.stringify(poolStatus(globalOptions(cmd).root), null, 2) + '\n');
    });
  pool
    .command('fill')
    .description('set how many VMs to keep ready and boot the missing ones')
    .requiredOption('--size <n>', 'VMs kept ready (0 turns the pool off)', count('size', 16))
    .option('--idle-timeout <seconds>', 'an unclaimed VM powers off after this long and is not replaced (0, the default: never)', count('idle timeout', 86_400 * 30))
    .option('--wait', 'return once the pool is ready (or a boot failed)', false)
    .action(async (o: { size: number; idleTimeout?: number; wait: boolean }, cmd: Command) => {
      const g = globalOptions(cmd);
      const { fill } = await import('../runtime/pool/pool-admin.js');
      await fill(g.root, g.debug, o.size, o.idleTimeout, o.wait);
    });
  pool
    .command('drain')
    .description('turn the pool off and power off the VMs no container has claimed')
    .action(async (_o: unknown, cmd: Command) => {
      const { drain } = await import('../runtime/pool/pool-admin.js');
      await drain(globalOptions(cmd).root);
    });

  program
    .command('pool-vm', { hidden: true })
    .action(async (_o: unknown, cmd: Command) => {
      const g = globalOptions(cmd);
      const { poolVm } = await import('../runtime/pool/pool-vm.js');
      process.exit(await poolVm({ root: g.root, debug: g.debug }));
    });
  program
    .command('vmm-thin', { hidden: true })
    .argument('<container-id>')
    .option('--netns <path>')
    .action(async (_id: string, o: { netns?: string }) => {
      const { thinVmm } = await import('../runtime/pool/thin-vmm.js');
      await thinVmm({ netns: o.netns });
    });
}
