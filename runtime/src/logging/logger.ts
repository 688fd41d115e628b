/**
 * createLogger(config) runs once in a program's main and is passed down; there is no import-time
 * logger. JSON lines by default, pretty when stdout is a terminal; passwords are redacted.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export interface LoggerOptions {
  readonly level: string;
  readonly name?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stdout is a TTY. */
  readonly pretty?: boolean;
  /** Write to this stream instead of stdout (tests). */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  const base = {
    level: opts.level,
    name: opts.name,
    redact: { paths: ['password', '*.password', 'brokerUrl', '*.brokerUrl', 'url', '*.url'], censor: redactValue },
  };
  const usePretty = opts.pretty ?? (!opts.destination && process.stdout.isTTY === true);
  if (usePretty) return pino(base, pretty({ colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  return opts.destination ? pino(base, opts.destination as pino.DestinationStream) : pino(base);
}

/** Keeps URLs readable in logs, without their password. */
function redactValue(value: unknown): unknown {
  if (typeof value !== 'string') return '***';
  return value.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@');
}
