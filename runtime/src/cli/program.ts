/**
 * The `celeriac` command (main.ts loads it): worker, beat, call, result, purge, migrate, events, inspect, control. Every command has --help; configuration
 * flags come from the config table (runtime/src/app/config.ts). How a command ends (message, exit
 * code, --debug) is report.ts's business, for every command alike.
 */
import { Command } from 'commander';
import { VERSION } from '../version.js';
import { beatCommand } from './commands/beat.js';
import { callCommand } from './commands/call.js';
import { controlCommand, inspectCommand } from './commands/control.js';
import { eventsCommand } from './commands/events.js';
import { migrateCommand } from './commands/migrate.js';
import { purgeCommand } from './commands/purge.js';
import { resultCommand } from './commands/result.js';
import { workerCommand } from './commands/worker.js';
import { EXIT_CODES_HELP, runProgram } from './report.js';

const program = new Command('celeriac')
  .description('A Celery-compatible task queue for TypeScript: run workers, call tasks, read results.')
  .version(VERSION, '-V, --version', 'print the celeriac version')
  .option('--debug', 'print stack traces of errors (env CELERIAC_DEBUG=1)')
  .showHelpAfterError()
  .addCommand(workerCommand())
  .addCommand(beatCommand())
  .addCommand(callCommand())
  .addCommand(resultCommand())
  .addCommand(purgeCommand())
  .addCommand(migrateCommand())
  .addCommand(eventsCommand())
  .addCommand(inspectCommand())
  .addCommand(controlCommand())
  .addHelpText(
    'after',
    '\nConfiguration comes from flags, CELERIAC_* env vars (CELERY_BROKER_URL and CELERY_RESULT_BACKEND too) and createApp options.\n\n' + EXIT_CODES_HELP,
  );

await runProgram(program, process.argv);
