/**
 * `--watch` (development): calls `onChange` when a source file in the tasks module's folder, or
 * below it, changes. ES modules cannot be unloaded, and Node keeps no list of the files a module
 * imported, so the folder stands for "the module and what it imports" (node_modules and dot
 * folders excluded); a burst of writes (an editor saving, tsc emitting) is one change.
 */
import { watch } from 'node:fs';
import { dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';

const SOURCE = /\.(c|m)?(j|t)sx?$|\.json$/;
const SETTLE_MS = 200;

/** Starts watching; returns the function that stops it. */
export function watchTasksModule(tasksModule: string, onChange: (file: string) => void, log: Logger): () => void {
  const dir = dirname(fileURLToPath(tasksModule));
  let timer: NodeJS.Timeout | null = null;
  const watcher = watch(dir, { recursive: true }, (_event, name) => {
    const file = name ? String(name) : '';
    if (!SOURCE.test(file) || file.split(sep).some((part) => part === 'node_modules' || part.startsWith('.'))) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      log.info({ file }, `${file} changed: restarting the pool`);
      onChange(file);
    }, SETTLE_MS);
  });
  watcher.on('error', (err) => log.error({ err, dir }, '--watch: watching the tasks folder failed; edits are no longer picked up'));
  log.info({ dir }, `--watch: the pool restarts when a source file under ${dir} changes`);
  return () => {
    if (timer) clearTimeout(timer);
    watcher.close();
  };
}
