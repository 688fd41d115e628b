#!/usr/bin/env node
/**
 * The `celeriac` command: worker, call, result, purge. Every command has --help; configuration
 * flags come from the config table (runtime/src/app/config.ts).
 */
import { Command } from 'commander';
import { ConfigError } from '../errors.js';
import { callCommand } from './commands/call.js';
import { purgeCommand } from './commands/purge.js';
import { resultCommand } from './commands/result.js';
import { workerCommand } from './commands/worker.js';

const program = new Command('celeriac')
  .description('A Celery-compatible task queue for TypeScript: run workers, call tasks, read results.')
  .showHelpAfterError()
  .addCommand(workerCommand())
  .addCommand(callCommand())
  .addCommand(resultCommand())
  .addCommand(purgeCommand())
  .addHelpText('after', '\nConfiguration comes from flags, CELERIAC_* env vars (CELERY_BROKER_URL and CELERY_RESULT_BACKEND too) and createApp options.');

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof ConfigError) {
    process.stderr.write(`celeriac: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`celeriac: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
