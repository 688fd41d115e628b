#!/usr/bin/env node
/**
 * The `celeriac` bin. `celeriac worker` first re-executes node with the worker's heap settings
 * (worker-node-flags.ts), before the program and its dependencies load; then ./program.ts runs
 * the command.
 */
import { reexecWorkerWithNodeFlags } from './worker-node-flags.js';

reexecWorkerWithNodeFlags();
await import('./program.js');
