/**
 * Where beat keeps each entry's last run and which beat process leads. Two drivers:
 * - redis:// (rediss://): a lease key `SET NX PX`, renewed by its owner only, and a hash of last
 *   runs written only while the writer still holds the lease (one Lua script each: fencing);
 * - file://<dir> (the embedded default): the same two records as JSON files in <dir>, every change
 *   made under a short mutex file (created with O_EXCL) so processes on one host agree.
 * A lease lapses by itself: a beat killed with -9 is replaced once its lease expires.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ConfigError, redactUrl } from '../errors.js';
import { fileUrlPath } from '../transport/file-url.js';

/** The seam beat's scheduler stands on. Times are epoch ms. */
export interface ScheduleStore {
  readonly kind: string;
  /** Takes the leader lease, or renews it when `owner` holds it; true when `owner` leads for `ttlMs` from the call. */
  lead(owner: string, ttlMs: number): Promise<boolean>;
  /** Gives the lease up at once (clean shutdown), if `owner` holds it. */
  release(owner: string): Promise<void>;
  /** Last scheduled run of every entry that has one. */
  lastRuns(): Promise<Map<string, number>>;
  /** Sets `entry`'s last run when `owner` still holds the lease; false (nothing written) otherwise. */
  recordRun(owner: string, entry: string, atMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Store options: `prefix` names the keys (or files), so several apps can share one Redis. */
export interface ScheduleStoreOptions {
  readonly prefix?: string;
  readonly logger: Logger;
}

/** The store a URL names: redis://, rediss:// or file://. */
export async function createScheduleStore(url: string, o: ScheduleStoreOptions): Promise<ScheduleStore> {
  const prefix = o.prefix ?? 'celeriac-beat';
  if (url.startsWith('redis:') || url.startsWith('rediss:')) return redisScheduleStore(url, prefix, o.logger);
  if (url.startsWith('file:')) return fileScheduleStore(fileUrlPath(url, 'beat'), prefix);
  throw new ConfigError([`beat schedule store "${redactUrl(url)}": expected redis://, rediss:// or file://`]);
}

// KEYS[1] lease; ARGV owner, ttl. Renew when ours, else take it when free.
const LEAD = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;
// KEYS[1] lease, KEYS[2] last-run hash; ARGV owner, entry, time. Fenced: only the lease holder writes.
const RECORD = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

async function redisScheduleStore(url: string, prefix: string, log: Logger): Promise<ScheduleStore> {
  // Imported here: every app imports this module (index.ts), most never use a Redis schedule.
  const [{ Redis }, { OutageLog, parseRedisUrl, pingWithin, quit, redisOptions }] = await Promise.all([
    import('ioredis'),
    import('../transport/redis-connection.js'),
  ]);
  const parsed = parseRedisUrl(url);
  const outages = new OutageLog(log, 'beat schedule store');
  const client = outages.watch(new Redis(parsed.ioredisUrl, redisOptions(parsed, { lazyConnect: true })));
  await pingWithin(client, 10_000, url, 'beat schedule store');
  const [leaseKey, runsKey] = [`${prefix}:leader`, `${prefix}:last-run`];
  return {
    kind: 'redis',
    lead: async (owner, ttlMs) => (await client.eval(LEAD, 1, leaseKey, owner, String(ttlMs))) === 1,
    release: async (owner) => void (await client.eval(RELEASE, 1, leaseKey, owner)),
    async lastRuns() {
      const all = await client.hgetall(runsKey);
      return new Map(Object.entries(all).map(([k, v]) => [k, Number(v)]));
    },
    recordRun: async (owner, entry, atMs) => (await client.eval(RECORD, 2, leaseKey, runsKey, owner, entry, String(atMs))) === 1,
    close: () => quit(client),
  };
}

interface FileLease {
  owner: string;
  expiresAt: number;
}

/** A mutex file older than this was left by a process killed inside its few-ms critical section. */
const STALE_MUTEX_MS = 10_000;

async function fileScheduleStore(dir: string, prefix: string): Promise<ScheduleStore> {
  await mkdir(dir, { recursive: true });
  const [leasePath, runsPath, mutexPath] = [join(dir, `${prefix}.leader.json`), join(dir, `${prefix}.last-run.json`), join(dir, `${prefix}.mutex`)];
  const readJson = async <T>(path: string, empty: T): Promise<T> => {
    try {
      return JSON.parse(await readFile(path, 'utf8')) as T;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty;
      throw new Error(`beat schedule store: cannot read ${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  const writeJson = async (path: string, v: unknown) => {
    const tmp = `${path}.${randomUUID()}.tmp`;
    await writeFile(tmp, JSON.stringify(v));
    await rename(tmp, path);
  };
  const locked = async <T>(fn: () => Promise<T>): Promise<T> => {
    for (;;) {
      try {
        await (await open(mutexPath, 'wx')).close();
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        // ENOENT: released between our open and stat; try again at once.
        const age = await stat(mutexPath).then(
          (s) => Date.now() - s.mtimeMs,
          (e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT') return 0;
            throw new Error(`beat schedule store: cannot stat ${mutexPath}: ${e.message}`, { cause: e });
          },
        );
        if (age > STALE_MUTEX_MS) {
          await unlink(mutexPath).catch((e: NodeJS.ErrnoException) => {
            // ENOENT: another process removed the stale mutex first; anything else is a real failure.
            if (e.code !== 'ENOENT') throw new Error(`beat schedule store: cannot remove stale ${mutexPath}: ${e.message}`, { cause: e });
          });
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    try {
      return await fn();
    } finally {
      await unlink(mutexPath);
    }
  };
  const holds = (l: FileLease | null, owner: string) => l !== null && l.owner === owner && l.expiresAt > Date.now();
  return {
    kind: 'file',
    lead: (owner, ttlMs) =>
      locked(async () => {
        const l = await readJson<FileLease | null>(leasePath, null);
        if (l && l.owner !== owner && l.expiresAt > Date.now()) return false;
        await writeJson(leasePath, { owner, expiresAt: Date.now() + ttlMs });
        return true;
      }),
    release: (owner) =>
      locked(async () => {
        if (holds(await readJson<FileLease | null>(leasePath, null), owner)) await unlink(leasePath);
      }),
    lastRuns: async () => new Map(Object.entries(await readJson<Record<string, number>>(runsPath, {}))),
    recordRun: (owner, entry, atMs) =>
      locked(async () => {
        if (!holds(await readJson<FileLease | null>(leasePath, null), owner)) return false;
        await writeJson(runsPath, { ...(await readJson<Record<string, number>>(runsPath, {})), [entry]: atMs });
        return true;
      }),
    close: async () => undefined,
  };
}
