/**
 * file:// — the embedded broker: several processes on one machine share queues in a folder, with
 * no server. The default when no broker URL is configured.
 *
 * URL: `file:///abs/path` (or `file://` for the default folder `$XDG_CACHE_HOME/celeriac/broker`),
 * option `?visibility_timeout=<seconds>` (default 30).
 *
 * Layout (each message is one kombu JSON envelope, the same text as in a Redis list):
 *   queues/<queue>/ready/<p>-<time>-<seq>-<pid>-<rand>[.r].json   `p` = 9 - priority: names sort in
 *                                                                  delivery order; `.r` = redelivered
 *   queues/<queue>/unacked/<same name>~<deadline ms>                claimed by a consumer
 *   fanout/<exchange>/<time>-<rand>.json                           broadcasts, kept 60 s
 *   tmp/                                                           writes land here, then rename()
 *
 * Claiming is one rename() from ready/ to unacked/: atomic, so exactly one process wins a message.
 * A consumer pushes the deadline of the messages it holds forward every third of the visibility
 * timeout; a message whose deadline passed (its consumer died) is renamed back to ready/ by any
 * consumer. Priorities 0-9, higher first (as on RabbitMQ).
 */
import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readFile, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BrokerError } from '../errors.js';
import { fromEnvelope, parseEnvelope, toEnvelope } from '../protocol/envelope.js';
import type { Broker, ConsumeOptions, Delivery, WireMessage } from './broker.js';
import { deadLettered } from './memory.js';
import { prefetchLimit, Signal, sleep } from './wait.js';

const FANOUT_KEEP_MS = 60_000;
const POLL_MS = 200;
/** How long a folder listing is trusted for new claims (newer or higher-priority files wait this long at most). */
const LISTING_MAX_AGE_MS = 250;

/** The folder a file:// URL names (shared with the file result backend). */
export function fileUrlPath(url: string, sub: string): string {
  const u = new URL(url);
  if (u.pathname && u.pathname !== '/') return fileURLToPath(new URL(`file://${u.pathname}`));
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(cache, 'celeriac', sub);
}

let seq = 0;
function messageName(priority: number): string {
  const p = 9 - Math.min(9, Math.max(0, Math.trunc(priority) || 0));
  seq = (seq + 1) % 1e6;
  return `${p}-${String(Date.now()).padStart(14, '0')}-${String(seq).padStart(6, '0')}-${process.pid}-${randomBytes(3).toString('hex')}.json`;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

export function createFileBroker(url = 'file://'): Broker {
  const root = fileUrlPath(url, 'broker');
  const visibilityMs = Number(new URL(url).searchParams.get('visibility_timeout') ?? 30) * 1000;
  const tmp = join(root, 'tmp');
  const made = new Set<string>();
  const changed = new Signal();
  /** close() stops every consume() and subscribe() of this broker. */
  const closed = new AbortController();

  async function ensure(dir: string): Promise<void> {
    if (made.has(dir)) return;
    await mkdir(dir, { recursive: true });
    made.add(dir);
  }
  const readyDir = (q: string) => join(root, 'queues', q, 'ready');
  const unackedDir = (q: string) => join(root, 'queues', q, 'unacked');

  async function writeAtomically(dir: string, name: string, text: string): Promise<void> {
    await Promise.all([ensure(tmp), ensure(dir)]);
    const t = join(tmp, name);
    await writeFile(t, text);
    await rename(t, join(dir, name));
  }

  async function publish(queue: string, message: WireMessage): Promise<void> {
    const env = toEnvelope(message, '', queue);
    await writeAtomically(readyDir(queue), messageName(Number(message.properties.priority ?? 0)), JSON.stringify(env));
  }

  /** Renames expired claims back to ready/ (their consumer died or stalled); never `ours`. */
  async function restoreExpired(queue: string, ours: ReadonlyMap<string, unknown>): Promise<void> {
    let names: string[];
    try {
      names = await readdir(unackedDir(queue));
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    const now = Date.now();
    for (const n of names) {
      const i = n.lastIndexOf('~');
      if (i < 0 || Number(n.slice(i + 1)) > now || ours.has(`${queue}/${n.slice(0, i)}`)) continue;
      const base = n.slice(0, i).replace(/(\.r)?\.json$/, '.r.json');
      await rename(join(unackedDir(queue), n), join(readyDir(queue), base)).catch((err) => {
        if (!isMissing(err)) throw err; // another consumer restored it first
      });
    }
  }

  return {
    kind: 'file',
    async connect() {
      try {
        await Promise.all([ensure(tmp), ensure(join(root, 'queues')), ensure(join(root, 'fanout'))]);
      } catch (err) {
        throw new BrokerError(`Cannot use the file broker folder ${root}: ${(err as Error).message}`, { cause: err });
      }
    },
    publish,

    async consume(queues, onDelivery, opts: ConsumeOptions) {
      const signal = AbortSignal.any([opts.signal, closed.signal]);
      await Promise.all(queues.flatMap((q) => [ensure(readyDir(q)), ensure(unackedDir(q))]));
      const held = new Map<string, { queue: string; name: string; deadline: number }>();
      const listings = new Map<string, { names: string[]; next: number; at: number }>();
      const watchers: FSWatcher[] = queues.map((q) => watch(readyDir(q), () => changed.notify()));
      for (const w of watchers) w.on('error', () => changed.notify());
      const abort = () => changed.notify();
      signal.addEventListener('abort', abort, { once: true });

      // Keep our claims alive; restore others' expired claims.
      const keeper = (async () => {
        while (!signal.aborted) {
          // Extend early (a quarter in) so a busy event loop does not let our own claims lapse.
          await sleep(Math.min(1000, visibilityMs / 4), signal);
          const soon = Date.now() + (visibilityMs * 3) / 4;
          for (const [key, h] of held) {
            if (h.deadline > soon) continue;
            const deadline = Date.now() + visibilityMs;
            const from = join(unackedDir(h.queue), `${h.name}~${h.deadline}`);
            const to = join(unackedDir(h.queue), `${h.name}~${deadline}`);
            try {
              await rename(from, to);
              h.deadline = deadline;
            } catch (err) {
              if (!isMissing(err)) throw err;
              held.delete(key); // settled meanwhile, or restored by another consumer
            }
          }
          for (const q of queues) await restoreExpired(q, held);
        }
      })();

      const claim = async (queue: string, name: string): Promise<void> => {
        const deadline = Date.now() + visibilityMs;
        const claimed = join(unackedDir(queue), `${name}~${deadline}`);
        try {
          await rename(join(readyDir(queue), name), claimed);
        } catch (err) {
          if (isMissing(err)) return; // another consumer won this message
          throw err;
        }
        const text = await readFile(claimed, 'utf8');
        const key = `${queue}/${name}`;
        const h = { queue, name, deadline };
        held.set(key, h);
        let message: WireMessage;
        try {
          message = fromEnvelope(parseEnvelope(text));
        } catch (err) {
          // Not an envelope at all: keep the bytes as the body so the worker dead-letters it.
          message = { body: Buffer.from(text), contentType: 'application/octet-stream', contentEncoding: 'binary', headers: {}, properties: {} };
        }
        let settled = false;
        const current = () => join(unackedDir(queue), `${name}~${h.deadline}`);
        const settle = () => {
          if (settled) return false;
          settled = true;
          held.delete(key);
          changed.notify();
          return true;
        };
        const d: Delivery = {
          message,
          info: { queue, exchange: '', routingKey: queue, redelivered: name.endsWith('.r.json') },
          async ack() {
            if (!settle()) return;
            await unlink(current()).catch((err) => {
              if (isMissing(err)) throw new BrokerError(`Message ${name} in queue "${queue}" was restored to the queue before it was acknowledged (visibility timeout ${visibilityMs} ms passed)`);
              throw err;
            });
          },
          async reject({ requeue, reason }) {
            if (!settle()) return;
            if (requeue) {
              await rename(current(), join(readyDir(queue), name.replace(/(\.r)?\.json$/, '.r.json')));
            } else {
              await publishDead(queue, text, reason);
              await unlink(current());
            }
          },
        };
        onDelivery(d).catch(() => d.reject({ requeue: true }));
      };

      const publishDead = async (queue: string, text: string, reason: string | undefined) => {
        let msg: WireMessage;
        try {
          msg = fromEnvelope(parseEnvelope(text));
        } catch {
          msg = { body: Buffer.from(text), contentType: 'application/octet-stream', contentEncoding: 'binary', headers: {}, properties: {} };
        }
        await publish(`${queue}.dead`, deadLettered(msg, queue, reason));
      };

      try {
        while (!signal.aborted) {
          let room = prefetchLimit(opts.prefetch) - held.size;
          if (room > 0) {
            for (const q of queues) {
              if (room <= 0 || signal.aborted) break;
              // Claim from the last listing while it lasts: listing a folder of N messages for
              // every freed slot would cost O(N) per task. It is re-read when used up or stale.
              let l = listings.get(q);
              if (!l || l.next >= l.names.length || Date.now() - l.at > LISTING_MAX_AGE_MS) {
                l = { names: (await readdir(readyDir(q))).filter((n) => n.endsWith('.json')).sort(), next: 0, at: Date.now() };
                listings.set(q, l);
              }
              while (room > 0 && l.next < l.names.length && !signal.aborted) {
                const before = held.size;
                await claim(q, l.names[l.next++]!);
                room -= held.size - before;
              }
            }
          }
          if (signal.aborted) break;
          // Wake on a new file, on a settle, or after POLL_MS (fs.watch can miss events on some filesystems).
          await Promise.race([changed.wait(), sleep(POLL_MS, signal)]);
        }
      } finally {
        signal.removeEventListener('abort', abort);
        for (const w of watchers) w.close();
        await keeper;
      }
    },

    async broadcast(exchange, message) {
      const name = `${String(Date.now()).padStart(14, '0')}-${randomBytes(6).toString('hex')}.json`;
      await writeAtomically(join(root, 'fanout', exchange), name, JSON.stringify(toEnvelope(message, exchange, '')));
    },

    async subscribe(exchange, onMessage, outer) {
      const signal = AbortSignal.any([outer, closed.signal]);
      const dir = join(root, 'fanout', exchange);
      await ensure(dir);
      const since = String(Date.now()).padStart(14, '0');
      const seen = new Set<string>();
      while (!signal.aborted) {
        for (const n of (await readdir(dir)).sort()) {
          if (n < since || seen.has(n)) continue;
          seen.add(n);
          const text = await readFile(join(dir, n), 'utf8').catch((err) => {
            if (isMissing(err)) return null; // expired and removed by another process
            throw err;
          });
          if (text !== null) onMessage(fromEnvelope(parseEnvelope(text)));
        }
        // Expire old broadcasts (any subscriber may do it).
        const old = String(Date.now() - FANOUT_KEEP_MS).padStart(14, '0');
        for (const n of seen) {
          if (n < old) {
            seen.delete(n);
            await unlink(join(dir, n)).catch((err) => {
              if (!isMissing(err)) throw err;
            });
          }
        }
        await sleep(100, signal);
      }
    },

    async depth(queue) {
      try {
        return (await readdir(readyDir(queue))).filter((n) => n.endsWith('.json')).length;
      } catch (err) {
        if (isMissing(err)) return 0;
        throw err;
      }
    },

    async purge(queue) {
      let n = 0;
      let names: string[] = [];
      try {
        names = await readdir(readyDir(queue));
      } catch (err) {
        if (!isMissing(err)) throw err;
      }
      for (const name of names) {
        try {
          await unlink(join(readyDir(queue), name));
          n++;
        } catch (err) {
          if (!isMissing(err)) throw err; // consumed meanwhile: not purged by us
        }
      }
      return n;
    },

    async close() {
      closed.abort();
    },
  };
}
