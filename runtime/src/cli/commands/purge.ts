/** `celeriac purge`: delete the waiting messages of queues. */
import { Command } from 'commander';
import { loadApp, withConnectionOptions } from '../load-app.js';

export function purgeCommand(): Command {
  return withConnectionOptions(new Command('purge'))
    .description('Delete all waiting (not yet delivered) messages from queues. Messages held by workers are kept.')
    .option('-Q, --queues <list>', 'comma-separated queues (default: the configured queues, celery)')
    .action(async (f: Record<string, string | undefined>) => {
      const app = await loadApp({ app: f.app }, { brokerUrl: f.broker, resultBackend: f.resultBackend, queues: f.queues }, false);
      try {
        const broker = await app.broker();
        let total = 0;
        for (const q of app.config.queues) {
          const n = await broker.purge(q);
          total += n;
          process.stdout.write(`${q}: purged ${n} message(s)\n`);
        }
        process.stdout.write(`total: ${total}\n`);
      } finally {
        await app.close();
      }
    });
}
