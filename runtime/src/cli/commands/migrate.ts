/** `celeriac migrate`: move waiting messages from one broker to another (app/migrate.ts). */
import { Command, InvalidArgumentError } from 'commander';
import { migrateMessages, type MigrateProgress } from '../../app/migrate.js';
import { createBroker } from '../../brokers/index.js';
import { redactUrl } from '../../errors.js';
import { createLogger } from '../../logging/logger.js';

const positiveInt = (v: string): number => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('expected an integer >= 1');
  return Number(v);
};

/**
 * A progress line on stderr: rewritten in place on a terminal; elsewhere (logs, CI) one line per
 * twentieth of each queue and at its end.
 */
function progressLine(out: NodeJS.WriteStream): (p: MigrateProgress) => void {
  return (p) => {
    const what = p.task ? ` ${p.task}[${p.id}]` : '';
    if (out.isTTY) {
      out.write(`\r\x1b[Kmigrating ${p.queue}: ${p.moved}/${p.total}${what}`);
      if (p.moved === p.total) out.write('\n');
    } else if (p.moved === p.total || p.moved % Math.max(1, Math.floor(p.total / 20)) === 0) {
      out.write(`migrating ${p.queue}: ${p.moved}/${p.total}${what}\n`);
    }
  };
}

export function migrateCommand(): Command {
  return new Command('migrate')
    .description(
      'Move the waiting messages of queues from one broker to another, unchanged (body, headers, properties), as `celery migrate`: ' +
        'each is published to the destination queue of the same name and only then acknowledged on the source.',
    )
    .argument('<from>', 'source broker URL (redis://, amqp://, file://, ...)')
    .argument('<to>', 'destination broker URL')
    .option('-Q, --queues <list>', 'comma-separated queues to move', 'celery')
    .option('-n, --limit <n>', 'move at most this many messages in all', positiveInt)
    .addHelpText('after', '\nMessages held by workers (prefetched, unacknowledged) stay where they are. Progress goes to stderr, counts to stdout.')
    .action(async (fromUrl: string, toUrl: string, f: { queues: string; limit?: number }) => {
      // Logs go to stderr with the progress: stdout carries only the counts.
      const log = createLogger({ level: 'warn', name: 'celeriac-migrate', destination: process.stderr });
      const queues = f.queues
        .split(',')
        .map((q) => q.trim())
        .filter(Boolean);
      const [from, to] = await Promise.all([createBroker(fromUrl, { logger: log }), createBroker(toUrl, { logger: log })]);
      try {
        await Promise.all([from.connect(), to.connect()]);
        process.stderr.write(`migrating ${queues.join(', ')} from ${redactUrl(fromUrl)} to ${redactUrl(toUrl)}\n`);
        const moved = await migrateMessages(from, to, { queues, limit: f.limit, onProgress: progressLine(process.stderr) });
        for (const m of moved) process.stdout.write(`${m.queue}: migrated ${m.moved} message(s)\n`);
        process.stdout.write(`total: ${moved.reduce((n, m) => n + m.moved, 0)}\n`);
      } finally {
        await Promise.all([from.close(), to.close()]);
      }
    });
}
