/** `celeriac result`: print a task's state and result. */
import { Command } from 'commander';
import { loadApp, parseNumberOption, withConnectionOptions } from '../load-app.js';
import { EXIT_CODES } from '../report.js';

export function resultCommand(): Command {
  return withConnectionOptions(new Command('result'))
    .description("Print a task's stored state and result as JSON (PENDING when nothing is stored).")
    .argument('<id>', 'task id')
    .option('-w, --wait', 'wait until the task is ready')
    .option('--timeout <ms>', 'with --wait: give up after this long', '60000')
    .action(async (id: string, f: Record<string, string | boolean | undefined>) => {
      const app = await loadApp({ app: f.app as string | undefined }, { brokerUrl: f.broker, resultBackend: f.resultBackend }, false);
      try {
        const r = app.asyncResult(id);
        if (f.wait) await r.get({ timeout: parseNumberOption('--timeout', f.timeout), propagate: false });
        const meta = await r.meta();
        process.stdout.write(`${JSON.stringify(meta, null, 2)}\n`);
        if (meta.status === 'FAILURE' || meta.status === 'REVOKED') process.exitCode = EXIT_CODES.taskFailed;
      } finally {
        await app.close();
      }
    });
}
