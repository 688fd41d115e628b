/** Shared by the CLI commands: load the user's app module, or make a plain client app. */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { createApp, type App } from '../app/app.js';
import { importApp } from '../app/app-module.js';
import type { Config } from '../app/config.js';
import { ConfigError } from '../errors.js';

/** Adds the flags every command shares. */
export function withConnectionOptions(cmd: Command): Command {
  return cmd
    .option('-A, --app <module>', 'ES module exporting `app` (named or default); env CELERIAC_APP')
    .option('-b, --broker <url>', 'broker URL (file:// by default); env CELERIAC_BROKER_URL')
    .option('--result-backend <url>', 'result backend URL; env CELERIAC_RESULT_BACKEND');
}

/** The file URL of the `-A` module (the pool runners import it too). */
export function appModuleUrl(path: string): string {
  return pathToFileURL(resolve(process.cwd(), path)).href;
}

/** Imports `-A` (or CELERIAC_APP) and applies the CLI flags on top of its config. */
export async function loadApp(opts: { app?: string }, flags: Partial<Record<keyof Config, unknown>>, required: boolean): Promise<App> {
  const path = opts.app ?? process.env.CELERIAC_APP;
  let app: App;
  if (path) {
    app = await importApp(appModuleUrl(path), `--app ${path}`);
  } else if (required) {
    throw new ConfigError(['--app: a worker needs the module that defines its tasks (-A ./tasks.js or CELERIAC_APP)']);
  } else {
    app = createApp();
  }
  // A client command (call, result, purge...) answers on stdout: its log lines go to stderr.
  const stream = required || process.env.CELERIAC_LOG_STREAM ? {} : { logStream: 'stderr' };
  const defined = Object.fromEntries(Object.entries({ ...stream, ...flags }).filter(([, v]) => v !== undefined));
  if (Object.keys(defined).length > 0) app.configure(defined);
  return app;
}

/** Parses a JSON option, naming the flag when it is not valid JSON of the right shape. */
export function parseJsonOption<T>(flag: string, text: string | undefined, shape: 'array' | 'object', fallback: T): T {
  if (text === undefined) return fallback;
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([`${flag}: not valid JSON (${(err as Error).message}): ${text}`]);
  }
  const ok = shape === 'array' ? Array.isArray(v) : v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!ok) throw new ConfigError([`${flag}: expected a JSON ${shape}, got ${text}`]);
  return v as T;
}

/** Parses a numeric option, naming the flag when it is not a number (undefined stays undefined). */
export function parseNumberOption(flag: string, text: unknown): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text === '' || !Number.isFinite(n)) throw new ConfigError([`${flag}: expected a number, got "${String(text)}"`]);
  return n;
}
