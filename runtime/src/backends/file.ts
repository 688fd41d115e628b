/**
 * file:// result store: results in a folder, shared by the processes of one machine.
 * URL: `file:///abs/path` or `file://` (default folder `$XDG_CACHE_HOME/celeriac/results`).
 * One file per key, `{ "value": ..., "expiresAt": ms | null }`, written to a temp file and renamed
 * (readers never see half a file). incr() serializes writers with a lock folder. listen() and
 * watch() use fs.watch, so waiting clients are woken at once. Reads and writes of one key are synchronous
 * calls (a few system calls on a small local file: cheaper than libuv's thread pool and a
 * promise each, see ../brokers/file.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { mkdir, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { BackendError } from '../errors.js';
import { fileUrlPath } from '../transport/file-url.js';
import { sleep } from '../transport/wait.js';
import { isSuccessMeta, watchByListen, type KeyValueStore } from './backend.js';

const LOCK_STALE_MS = 10_000;

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

export function createFileStore(url = 'file://'): KeyValueStore {
  const root = fileUrlPath(url, 'results');
  const dataDir = join(root, 'data');
  const tmpDir = join(root, 'tmp');
  let ready: Promise<unknown> | null = null;
  let made = false;
  const ensure = () =>
    (ready ??= Promise.all([mkdir(dataDir, { recursive: true }), mkdir(tmpDir, { recursive: true })]).then(() => {
      made = true;
    }));
  // Keys are Celery's (`celery-task-meta-<uuid>`): safe as file names once slashes are escaped.
  const fileOf = (key: string) => `${dataDir}/${encodeURIComponent(key)}`;
  // Temp names: `<pid>-<random>` drawn once (unique between processes, and between containers
  // whose pids collide), then a counter: no random draw per write.
  const origin = `${tmpDir}/${process.pid}-${randomBytes(6).toString('hex')}-`;
  let seq = 0;

  // One fs.watch on the data folder serves every waiting client (thousands may wait at once).
  const waiters = new Map<string, Set<() => void>>();
  let watcher: FSWatcher | null = null;
  const wakeAll = () => {
    for (const set of [...waiters.values()]) for (const w of [...set]) w();
  };
  function watchName(name: string, wake: () => void): void {
    let set = waiters.get(name);
    if (!set) waiters.set(name, (set = new Set()));
    set.add(wake);
    if (!watcher) {
      watcher = watch(dataDir, (_event, file) => {
        if (file) for (const w of [...(waiters.get(file) ?? [])]) w();
        else wakeAll(); // the platform did not say which file: let every waiter re-read
      });
      // A broken watch wakes everyone; they re-read and fall back to polling.
      watcher.on('error', wakeAll);
    }
  }
  function unwatch(name: string, wake: () => void): void {
    const set = waiters.get(name);
    set?.delete(wake);
    if (set?.size === 0) waiters.delete(name);
    if (waiters.size === 0 && watcher) {
      watcher.close();
      watcher = null;
    }
  }

  function readNow(key: string): string | null {
    const file = fileOf(key);
    let text: string;
    try {
      // Most reads are of a key not written yet (the worker checks before storing a result): a
      // stat that says so is cheaper than the ENOENT error (with its stack) a read would throw.
      if (!statSync(file, { throwIfNoEntry: false })) return null;
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (isMissing(err)) return null;
      throw new BackendError(`Cannot read result key ${key} in ${dataDir}: ${(err as Error).message}`, { cause: err });
    }
    const e = JSON.parse(text) as { value: string; expiresAt: number | null };
    if (e.expiresAt !== null && e.expiresAt < Date.now()) return null;
    return e.value;
  }
  const read = async (key: string) => readNow(key);

  /** Writes once the folders exist (`made`). */
  function writeNow(key: string, value: string, ttlMs?: number): void {
    const t = `${origin}${seq++}`;
    writeFileSync(t, JSON.stringify({ value, expiresAt: ttlMs ? Date.now() + ttlMs : null }));
    renameSync(t, fileOf(key));
  }
  async function write(key: string, value: string, ttlMs?: number): Promise<void> {
    if (!made) await ensure();
    writeNow(key, value, ttlMs);
  }

  async function withLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    await ensure();
    const lock = `${fileOf(key)}.lock`;
    const started = Date.now();
    for (;;) {
      try {
        await mkdir(lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        // A holder that died leaves its lock; break it after LOCK_STALE_MS.
        if (Date.now() - started > LOCK_STALE_MS) await rmdir(lock).catch(() => undefined);
        await sleep(2);
      }
    }
    try {
      return await fn();
    } finally {
      await rmdir(lock);
    }
  }

  /** Calls `onSet` at each write of `key` (the folders are made first: fs.watch needs them). */
  function listen(key: string, onSet: () => void): () => void {
    if (!made) {
      mkdirSync(dataDir, { recursive: true });
      mkdirSync(tmpDir, { recursive: true });
      made = true;
    }
    const name = encodeURIComponent(key);
    watchName(name, onSet);
    return () => unwatch(name, onSet);
  }

  return {
    kind: 'file',
    get: read,
    mget: (keys) => Promise.all(keys.map(read)),
    set: (key, value, opts) => write(key, value, opts?.ttlMs),
    // Read, checked and written with no await in between: no store of this process can come
    // between (a retried run's SUCCESS and its first run's late RETRY). Another process's write can
    // still land within those few system calls, as with Celery's own filesystem backend.
    async setUnlessSuccess(key, value, opts) {
      if (!made) await ensure();
      if (!isSuccessMeta(readNow(key))) writeNow(key, value, opts?.ttlMs);
    },
    incr: (key, opts) =>
      withLock(key, async () => {
        const n = Number((await read(key)) ?? 0) + 1;
        await write(key, String(n), opts?.ttlMs);
        return n;
      }),
    async delete(key) {
      await unlink(fileOf(key)).catch((err) => {
        if (!isMissing(err)) throw err;
      });
    },
    listen,
    watch: watchByListen(listen),
    async close() {},
  };
}
