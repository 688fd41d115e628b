/**
 * `celeriac events`: watch the events of every worker on the broker, as `celery events`. A live
 * view of workers (online, active, processed) and recent tasks (state, args, result, runtime),
 * redrawn every second; `--dump` prints one line per event instead, in `celery events --dump`'s
 * format. Task events arrive only from workers started with `-E` (or after enable_events).
 */
import { Command } from 'commander';
import { ConfigError } from '../../errors.js';
import { EventState, type TaskView } from '../../events/state.js';
import { receiveEvents, type ReceivedEvent } from '../../events/receiver.js';
import { loadApp, withConnectionOptions } from '../load-app.js';

/** Celery's dumper names for worker events; other types print with `-` as a space. */
const HUMAN_TYPES: Record<string, string> = { 'worker-offline': 'shutdown', 'worker-online': 'started', 'worker-heartbeat': 'heartbeat' };

/** Epoch seconds as Python prints a naive UTC datetime: `2026-12-02 01:02:03.456000`. */
function pyTime(sec: number): string {
  return new Date(sec * 1000).toISOString().replace('T', ' ').replace('Z', '000');
}

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

/** One line per event, as Celery's events/dumper.py writes it; `names` remembers task names by id. */
export function dumpLine(e: ReceivedEvent, names: Map<string, string>): string {
  const { type, hostname, timestamp, ...rest } = e;
  const fields: Record<string, unknown> = { ...rest };
  const human = HUMAN_TYPES[type] ?? type.toLowerCase().replace(/-/g, ' ');
  let task = '';
  if (type.startsWith('task-')) {
    const uuid = show(fields.uuid);
    delete fields.uuid;
    if (type === 'task-received' || type === 'task-sent') {
      task = `${show(fields.name)}(${uuid}) args=${show(fields.args)} kwargs=${show(fields.kwargs)}`;
      for (const k of ['name', 'args', 'kwargs']) delete fields[k];
      names.set(uuid, task);
      if (names.size > 10_000) names.delete(names.keys().next().value!);
    } else {
      task = names.get(uuid) ?? uuid;
    }
  }
  const list = Object.keys(fields)
    .sort()
    .map((k) => `${k}=${show(fields[k])}`)
    .join(', ');
  return `${hostname} [${pyTime(timestamp)}] ${human}${list ? ':' : ''}${task ? ` ${task}` : ''}${list ? ` ${list}` : ''}`;
}

const cell = (s: string | null, width: number) => {
  const t = (s ?? '').replace(/\s+/g, ' ');
  return (t.length > width ? `${t.slice(0, width - 1)}…` : t).padEnd(width);
};

/** The live view as text: workers, then the most recent tasks first. */
export function renderView(state: EventState, nowSec: number, maxTasks = 20): string {
  const lines = ['Workers', `  ${cell('HOSTNAME', 36)} ${cell('STATUS', 8)} ${cell('ACTIVE', 7)} ${cell('PROCESSED', 10)} ${cell('LOADAVG', 18)} SOFTWARE`];
  for (const w of state.workers.values()) {
    const status = state.alive(w, nowSec) ? 'online' : 'offline';
    lines.push(
      `  ${cell(w.hostname, 36)} ${cell(status, 8)} ${cell(String(w.active), 7)} ${cell(String(w.processed), 10)} ${cell(w.loadavg.join(' '), 18)} ${w.swIdent} ${w.swVer}`,
    );
  }
  if (state.workers.size === 0) lines.push('  (none yet: workers send a heartbeat every 2 s)');
  lines.push(
    '',
    'Tasks (most recent first)',
    `  ${cell('UUID', 36)} ${cell('NAME', 24)} ${cell('STATE', 9)} ${cell('ARGS', 20)} ${cell('RESULT', 24)} RUNTIME`,
  );
  const recent: TaskView[] = [...state.tasks.values()].slice(-maxTasks).reverse();
  for (const t of recent) {
    const result = t.exception ?? t.result;
    const runtime = t.runtime === null ? '' : `${t.runtime.toFixed(3)}s`;
    lines.push(`  ${cell(t.uuid, 36)} ${cell(t.name, 24)} ${cell(t.state, 9)} ${cell(t.args, 20)} ${cell(result, 24)} ${runtime}`);
  }
  if (recent.length === 0) lines.push('  (none yet: task events come from workers run with -E)');
  return lines.join('\n');
}

export function eventsCommand(): Command {
  return withConnectionOptions(new Command('events'))
    .description('Watch worker and task events live (as `celery events`); task events need workers run with -E.')
    .option('-d, --dump', 'print one line per event instead of the live view')
    .option('--refresh <ms>', 'live view: redraw interval', '1000')
    .action(async (f: { app?: string; broker?: string; dump?: boolean; refresh: string }) => {
      const refreshMs = Number(f.refresh);
      if (!Number.isInteger(refreshMs) || refreshMs < 100) throw new ConfigError([`--refresh: expected milliseconds >= 100, got ${JSON.stringify(f.refresh)}`]);
      const app = await loadApp(f, { brokerUrl: f.broker }, false);
      const broker = await app.broker();
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const log = app.log.child({ component: 'events' });
      try {
        if (f.dump) {
          const names = new Map<string, string>();
          process.stdout.write(`-> celeriac events: dumping events of ${broker.kind} (Ctrl-C to stop)\n`);
          await receiveEvents(broker, (e) => process.stdout.write(`${dumpLine(e, names)}\n`), stop.signal, { log });
          return;
        }
        const state = new EventState();
        const tty = process.stdout.isTTY === true;
        const draw = () => process.stdout.write(`${tty ? '\x1b[2J\x1b[H' : '\n'}${renderView(state, Date.now() / 1000)}\n`);
        const timer = setInterval(draw, refreshMs);
        draw();
        try {
          await receiveEvents(broker, (e) => state.apply(e), stop.signal, { log });
        } finally {
          clearInterval(timer);
        }
      } finally {
        await app.close();
      }
    });
}
