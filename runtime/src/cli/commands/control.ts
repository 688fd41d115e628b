/**
 * `celeriac inspect <command>` and `celeriac control <command>`: remote control of running workers,
 * Python or celeriac (Celery's `celery inspect` / `celery control`). Positional arguments map onto
 * the command's declared arguments (`control rate_limit proj.add 10/m`).
 */
import { Command } from 'commander';
import type { ControlCommandSpec, NodeReply } from '../../app/control.js';
import { allCommands, BUILTIN_COMMANDS } from '../../control/commands.js';
import { CeleriacError } from '../../errors.js';
import { loadApp, withConnectionOptions } from '../load-app.js';

type Spec = Omit<ControlCommandSpec, 'handler'>;

/** Celery's EX_UNAVAILABLE: no worker answered. */
const EX_UNAVAILABLE = 69;

function convert(name: string, type: string, text: string): unknown {
  switch (type) {
    case 'int': {
      const n = Number(text);
      if (!Number.isInteger(n)) throw new CeleriacError('E_USAGE', `argument ${name}: expected an integer, got "${text}"`);
      return n;
    }
    case 'float': {
      const n = Number(text);
      if (!Number.isFinite(n)) throw new CeleriacError('E_USAGE', `argument ${name}: expected a number, got "${text}"`);
      return n;
    }
    case 'bool':
      return ['1', 'true', 'yes', 'on', 'y', 't'].includes(text.toLowerCase());
    case 'json':
      try {
        return JSON.parse(text) as unknown;
      } catch (err) {
        throw new CeleriacError('E_USAGE', `argument ${name}: not valid JSON: ${(err as Error).message}`);
      }
    default:
      return text;
  }
}

/** The request's `arguments` from the CLI's positional words (Celery's `_compile_arguments`). */
export function commandArguments(method: string, spec: Spec, words: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const declared = spec.args ?? [];
  declared.forEach(([name, type], i) => {
    if (i < words.length) out[name] = convert(name, type, words[i]!);
  });
  const rest = words.slice(declared.length);
  if (spec.variadic) out[spec.variadic] = rest;
  else if (rest.length > 0)
    throw new CeleriacError('E_USAGE', `${method} takes at most ${declared.length} argument(s) (${spec.signature ?? 'none'}), got ${words.length}`);
  return out;
}

function describe(specs: ReadonlyMap<string, Spec>, type: 'inspect' | 'control'): string {
  const lines = [...specs]
    .filter(([, s]) => s.type === type)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([n, s]) => `  ${`${n} ${s.signature ?? ''}`.padEnd(44)} ${s.help ?? ''}`);
  return `\nCommands:\n${lines.join('\n')}`;
}

/** Prints one reply as Celery does: `-> node: OK` and the text, or the value as JSON. */
function say(reply: NodeReply): void {
  for (const [node, value] of Object.entries(reply)) {
    const v = value as { ok?: unknown; error?: unknown } | null;
    const isDict = v !== null && typeof v === 'object' && !Array.isArray(v);
    const failed = isDict && 'error' in v;
    const text = isDict && 'ok' in v ? String(v.ok) : failed ? String(v.error) : JSON.stringify(value, null, 2);
    process.stdout.write(`-> ${node}: ${failed ? 'ERROR' : 'OK'}\n${text.replace(/^/gm, '    ')}\n`);
  }
}

function remoteCommand(type: 'inspect' | 'control'): Command {
  const verb = type === 'inspect' ? 'Inspect' : 'Control';
  return withConnectionOptions(new Command(type))
    .description(
      type === 'inspect'
        ? 'Ask running workers (Python or celeriac) for information: inspect ping, stats, active, registered, ...'
        : 'Change running workers (Python or celeriac): control rate_limit, revoke, add_consumer, shutdown, ...',
    )
    .argument('<command>', `the command (see below; -A adds the app's own commands)`)
    .argument('[args...]', 'its arguments, in the order of its signature')
    .option('-d, --destination <nodes>', 'comma-separated node names to ask (default: all)')
    .option('-t, --timeout <ms>', 'how long to wait for replies', '1000')
    .option('-j, --json', 'print the replies as one JSON document')
    .addHelpText('after', () => describe(BUILTIN_COMMANDS, type))
    .action(async (method: string, words: string[], f: Record<string, string | boolean | undefined>) => {
      const app = await loadApp({ app: f.app as string | undefined }, { brokerUrl: f.broker, resultBackend: f.resultBackend }, false);
      try {
        const specs = allCommands(app);
        const spec = specs.get(method);
        if (!spec || spec.type !== type) {
          const known = [...specs].filter(([, s]) => s.type === type).map(([n]) => n);
          throw new CeleriacError('E_USAGE', `${verb} command "${method}" is unknown (known: ${known.sort().join(', ')})`);
        }
        const timeoutMs = Number(f.timeout);
        if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new CeleriacError('E_USAGE', `--timeout: expected milliseconds > 0, got ${String(f.timeout)}`);
        const destination =
          typeof f.destination === 'string'
            ? f.destination
                .split(',')
                .map((d) => d.trim())
                .filter(Boolean)
            : undefined;
        const replies = await app.control.broadcast(method, commandArguments(method, spec, words), {
          reply: true,
          timeoutMs,
          destination,
          onReply: f.json ? undefined : say,
        });
        if (replies.length === 0) {
          process.stderr.write('Error: No nodes replied within time constraint\n');
          process.exitCode = EX_UNAVAILABLE;
          return;
        }
        if (f.json) process.stdout.write(`${JSON.stringify(type === 'inspect' ? Object.assign({}, ...replies) : replies)}\n`);
        else process.stdout.write(`\n${replies.length} node${replies.length === 1 ? '' : 's'} online.\n`);
      } finally {
        await app.close();
      }
    });
}

export const inspectCommand = (): Command => remoteCommand('inspect');
export const controlCommand = (): Command => remoteCommand('control');
