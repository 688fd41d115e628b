/** Finding the app in a user's tasks module: shared by the CLI (`-A`) and the pool runners. */
import { ConfigError } from '../errors.js';
import type { App } from './app.js';

function isApp(v: unknown): v is App {
  return v !== null && typeof v === 'object' && typeof (v as App).task === 'function' && (v as App).tasks instanceof Map;
}

/**
 * Imports the ES module at `url` and returns the app it exports (`app`, or the default export).
 * `what` names the module in errors (`--app ./tasks.js`).
 */
export async function importApp(url: string, what: string): Promise<App> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (err) {
    // The module loaded but its createApp() refused the configuration (a CELERIAC_* variable):
    // that error names the variable, which is what to fix, not the module.
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([`${what}: cannot import ${url}: ${(err as Error).message}`]);
  }
  const candidate = mod.app ?? mod.default;
  if (!isApp(candidate)) throw new ConfigError([`${what}: the module exports no celeriac app (export \`app\` or a default made with createApp())`]);
  return candidate;
}
