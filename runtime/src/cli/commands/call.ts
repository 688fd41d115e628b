/** `celeriac call`: send a task by name, optionally wait for its result. */
import { Command } from 'commander';
import { loadApp, parseJsonOption, parseNumberOption, withConnectionOptions } from '../load-app.js';
import { followState } from '../progress.js';

export function callCommand(): Command {
  return withConnectionOptions(new Command('call'))
    .description('Send a task by name (it may be a Python task) and print its id, or its result with --wait.')
    .argument('<name>', 'registered task name, e.g. proj.tasks.add')
    .option('--args <json>', 'positional arguments as a JSON array', '[]')
    .option('--kwargs <json>', 'keyword arguments as a JSON object', '{}')
    .option('-Q, --queue <queue>', 'queue to send to (default: the app default queue, celery)')
    .option('--countdown <ms>', 'run no earlier than this many milliseconds from now')
    .option('--expires <ms>', 'discard if not started within this many milliseconds')
    .option('--priority <n>', 'message priority 0-9')
    .option('-w, --wait', 'wait for the result and print it')
    .option('--timeout <ms>', 'with --wait: give up after this long', '60000')
    .action(async (name: string, f: Record<string, string | boolean | undefined>) => {
      const app = await loadApp({ app: f.app as string | undefined }, { brokerUrl: f.broker, resultBackend: f.resultBackend }, false);
      const args = parseJsonOption<unknown[]>('--args', f.args as string, 'array', []);
      const kwargs = parseJsonOption<Record<string, unknown>>('--kwargs', f.kwargs as string, 'object', {});
      // Every flag is checked before anything is sent.
      const timeout = parseNumberOption('--timeout', f.timeout);
      const result = await app.sendTask(name, args, kwargs, {
        queue: f.queue as string | undefined,
        countdown: parseNumberOption('--countdown', f.countdown),
        expires: parseNumberOption('--expires', f.expires),
        priority: parseNumberOption('--priority', f.priority),
      });
      if (!f.wait) {
        process.stdout.write(`${result.id}\n`);
        await app.close();
        return;
      }
      process.stderr.write(`sent ${name}[${result.id}], waiting...\n`);
      const done = new AbortController();
      followState(result, `${name}[${result.id}] `, { write: (text) => process.stderr.write(text), tty: process.stderr.isTTY === true }, done.signal);
      try {
        const value = await result.get({ timeout });
        process.stdout.write(`${JSON.stringify(value)}\n`);
      } finally {
        done.abort();
        await app.close();
      }
    });
}
