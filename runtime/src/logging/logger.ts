/**
 * createLogger(config) runs once in a program's main and is passed down; there is no import-time
 * logger. JSON lines by default, pretty when stdout is a terminal; passwords are redacted.
 */
import { createRequire } from 'node:module';
import { pino, stdSerializers, type DestinationStream, type Logger } from 'pino';
import { redactText } from '../errors.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  readonly level: string;
  readonly name?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stdout is a TTY. */
  readonly pretty?: boolean;
  /** Write to this stream instead of stdout (tests; the watchdog thread's synchronous stdout). */
  readonly destination?: NodeJS.WritableStream | DestinationStream;
  /** stdout (default) or stderr: a command whose stdout is its answer logs to stderr. */
  readonly stream?: 'stdout' | 'stderr';
}

export function createLogger(opts: LoggerOptions): Logger {
  const base = {
    level: opts.level,
    name: opts.name,
    redact: { paths: ['password', '*.password', 'brokerUrl', '*.brokerUrl', 'url', '*.url'], censor: redactValue },
    serializers: { err: serializeError },
    // The last line of defence for credentials that reach a line some other way (a driver's error
    // message quoting its URL): every line passes through redactText.
    hooks: { streamWrite: redactText },
  };
  const toStderr = opts.stream === 'stderr';
  const tty = (toStderr ? process.stderr : process.stdout).isTTY === true;
  const usePretty = opts.pretty ?? (!opts.destination && tty);
  if (usePretty) return pino(base, loadPretty()({ colorize: tty, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', destination: toStderr ? 2 : 1 }));
  if (opts.destination) return pino(base, opts.destination as DestinationStream);
  return toStderr ? pino(base, pino.destination({ fd: 2, sync: true })) : pino(base);
}

/**
 * pino-pretty, loaded only for a terminal (or when asked for): a worker in a container logs JSON
 * and never needs it. CommonJS, so `require` keeps createLogger() synchronous.
 */
function loadPretty(): typeof import('pino-pretty') {
  return createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
}

/** Keeps URLs readable in logs, without their password. */
function redactValue(value: unknown): unknown {
  return typeof value === 'string' ? redactText(value) : '***';
}

/** Commands whose arguments carry credentials (ioredis puts a failed command's args on its error). */
const SECRET_COMMANDS = new Set(['auth', 'hello', 'migrate']);

/** pino's error serializer, without the password that an ioredis AUTH error carries in `command.args`. */
function serializeError(err: unknown): unknown {
  const out = stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  // pino's `type` is the constructor's name ("Error"); a task's error is known by its `name`
  // (ZeroDivisionError), which is also the exc_type stored for it.
  if (out && err instanceof Error && typeof err.name === 'string' && err.name !== '') out.type = err.name;
  const command = out?.command as { name?: unknown; args?: unknown } | undefined;
  if (command && typeof command.name === 'string' && SECRET_COMMANDS.has(command.name.toLowerCase())) {
    out.command = { ...command, args: '[redacted]' };
  }
  return out;
}
