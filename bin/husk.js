// Entry point: a thin shim so start-up loads as little as possible.
import { main } from '../dist/src/cli/main.js';

const code = await main(process.argv.slice(2));
process.exit(code);
