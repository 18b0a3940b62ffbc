// Entry point: a thin shim so start-up loads as little as possible.
import module from 'node:module';

module.enableCompileCache?.();
const argv = process.argv.slice(2);
const { tryFastPath } = await import('../dist/src/cli/fast.js');
let code = await tryFastPath(argv);
if (code === undefined) {
  const { main } = await import('../dist/src/cli/main.js');
  code = await main(argv);
}
process.exit(code);
