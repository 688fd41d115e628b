/**
 * How the `celeriac` command ends: one exit code per kind of outcome, and one short message on
 * stderr that says what went wrong and what to try. main.ts applies this to every command, so a
 * new command only throws the right CeleriacError. Stack traces only with --debug (or
 * CELERIAC_DEBUG=1): a user's mistake is not a crash.
 */
import { CommanderError, type Command } from 'commander';
import {
  BackendError,
  BrokerError,
  CeleriacError,
  ComponentStartError,
  ConfigError,
  ResultTimeoutError,
  TaskFailedError,
  TaskRevokedError,
  redactText,
} from '../errors.js';

/** Exit codes of `celeriac`, by kind of outcome (README "Exit codes" and `--help` list them). */
export const EXIT_CODES = {
  /** Done. */
  ok: 0,
  /** An unexpected error (a bug, or a failure celeriac has no better word for); --debug shows the stack. */
  error: 1,
  /** Bad usage or configuration: unknown flag, bad value, no --app. Nothing was sent. */
  usage: 2,
  /** The task failed (FAILURE) or was revoked: its remote exception and traceback are printed. */
  taskFailed: 3,
  /** Waiting for a result timed out (--timeout). The task may still run. */
  timeout: 4,
  /** The broker or the result backend could not be reached or failed. */
  unavailable: 5,
} as const;

/** The exit code table as help text. */
export const EXIT_CODES_HELP = [
  'Exit codes:',
  '  0  done',
  '  1  unexpected error (run again with --debug for the stack trace)',
  '  2  usage or configuration error (bad flag or value, no --app)',
  '  3  the task failed or was revoked (its remote exception and traceback are printed)',
  '  4  timed out waiting for the result (--timeout)',
  '  5  broker or result backend unreachable',
].join('\n');

/** What to print and which code to exit with for an error that ended a command. */
function describeError(err: unknown, debug: boolean): { code: number; text: string } {
  const { code, text } = explain(err);
  const stack = debug ? stackOf(err) : '';
  // Driver messages may quote a URL: nothing printed here may carry a password.
  return { code, text: redactText(stack ? `${text}\n${stack}` : text) };
}

function explain(err: unknown): { code: number; text: string } {
  if (err instanceof TaskFailedError) {
    const head = `celeriac: task ${err.taskId} failed: ${err.excType}: ${err.excMessage}`;
    const tb = err.remoteTraceback?.trim();
    return { code: EXIT_CODES.taskFailed, text: tb ? `${head}\nRemote traceback:\n${tb}` : head };
  }
  if (err instanceof TaskRevokedError) return { code: EXIT_CODES.taskFailed, text: `celeriac: ${err.message}` };
  if (err instanceof ResultTimeoutError)
    return {
      code: EXIT_CODES.timeout,
      text:
        `celeriac: ${err.message} Is a worker consuming the task's queue? ` +
        `Wait longer with --timeout <ms>, or read it later with \`celeriac result ${err.taskId}\`.`,
    };
  // The worker's own component (broker, metrics, ...) failed: its cause decides the exit code and the hint.
  if (err instanceof ComponentStartError && err.cause instanceof CeleriacError) {
    const inner = explain(err.cause);
    return { code: inner.code, text: `celeriac: component "${err.component}" failed to start: ${inner.text.replace(/^celeriac: /, '')}` };
  }
  if (err instanceof ConfigError)
    return {
      code: EXIT_CODES.usage,
      text: err.problems.length === 1 ? `celeriac: invalid configuration: ${err.problems[0]}` : `celeriac: ${err.message}`,
    };
  if (err instanceof BrokerError) return { code: EXIT_CODES.unavailable, text: `celeriac: ${err.message} (broker URL: --broker or CELERIAC_BROKER_URL)` };
  if (err instanceof BackendError)
    return { code: EXIT_CODES.unavailable, text: `celeriac: ${err.message} (result backend URL: --result-backend or CELERIAC_RESULT_BACKEND)` };
  if (err instanceof CeleriacError) return { code: err.code === 'E_USAGE' ? EXIT_CODES.usage : EXIT_CODES.error, text: `celeriac: ${err.message}` };
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { code: EXIT_CODES.error, text: `celeriac: unexpected error: ${message}\nRun again with --debug for the stack trace.` };
}

/** The stack of an error and of each cause under it. */
function stackOf(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    parts.push(depth === 0 ? (e.stack ?? String(e)) : `Caused by: ${e.stack ?? String(e)}`);
  }
  return parts.join('\n');
}

/**
 * Runs `program` with this module's error handling: commander's own errors (unknown option,
 * missing argument) exit with the usage code after commander has printed them; --help and
 * --version exit 0; anything a command throws is described once on stderr.
 */
export async function runProgram(program: Command, argv: readonly string[]): Promise<void> {
  for (const cmd of allCommands(program)) cmd.exitOverride();
  try {
    // Resolves when a command's action does; a worker or beat keeps serving after that.
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage);
    const debug = argv.includes('--debug') || process.env.CELERIAC_DEBUG === '1';
    const { code, text } = describeError(err, debug);
    process.stderr.write(`${text}\n`);
    process.exit(code);
  }
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap((c) => allCommands(c as Command))];
}
