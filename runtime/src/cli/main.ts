#!/usr/bin/env node
/**
 * The `celeriac` command: worker, beat, call, result, purge, inspect, control. Every command has --help; configuration
 * flags come from the config table (runtime/src/app/config.ts).
 */
import { Command } from 'commander';
import { CeleriacError, ConfigError, redactText } from '../errors.js';
import { beatCommand } from './commands/beat.js';
import { callCommand } from './commands/call.js';
import { controlCommand, inspectCommand } from './commands/control.js';
import { purgeCommand } from './commands/purge.js';
import { resultCommand } from './commands/result.js';
import { workerCommand } from './commands/worker.js';

const program = new Command('celeriac')
  .description('A Celery-compatible task queue for TypeScript: run workers, call tasks, read results.')
  .showHelpAfterError()
  .addCommand(workerCommand())
  .addCommand(beatCommand())
  .addCommand(callCommand())
  .addCommand(resultCommand())
  .addCommand(purgeCommand())
  .addCommand(inspectCommand())
  .addCommand(controlCommand())
  .addHelpText('after', '\nConfiguration comes from flags, CELERIAC_* env vars (CELERY_BROKER_URL and CELERY_RESULT_BACKEND too) and createApp options.');

program.parseAsync(process.argv).catch((err: unknown) => {
  // Driver messages may quote a URL: nothing printed here may carry a password.
  if (err instanceof ConfigError) {
    process.stderr.write(`celeriac: ${redactText(err.message)}\n`);
    process.exit(2);
  }
  // Our own errors say what failed and what to do; a stack trace only for the unexpected.
  const text = err instanceof CeleriacError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`celeriac: ${redactText(text)}\n`);
  process.exit(1);
});
