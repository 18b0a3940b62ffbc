// Every conformance case, in report order (grouped by spec section).
import type { Case } from '../lib/case.js';
import { lifecycleCases } from './lifecycle.js';
import { hookCases } from './hooks.js';
import { processCases } from './process.js';
import { terminalCases } from './terminal.js';
import { containerCases } from './container.js';
import { linuxCases } from './linux.js';
import { pauseCases } from './pause.js';
import { execCases } from './exec.js';

export const allCases: Case[] = [...lifecycleCases, ...hookCases, ...processCases, ...terminalCases, ...containerCases, ...linuxCases, ...execCases, ...pauseCases];

const seen = new Set<string>();
for (const c of allCases) {
  if (seen.has(c.name)) throw new Error(`duplicate conformance case name ${c.name}`);
  seen.add(c.name);
}
