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
 *   bindings/<exchange>/<routing key>~<queue>                      direct-exchange bindings (names
 *                                                                  URI-encoded): remote-control replies
 *   tmp/                                                           writes land here, then rename()
 *
 * Claiming is one rename() from ready/ to unacked/: atomic, so exactly one process wins a message.
 * The per-message operations (write + rename to publish, rename + read to claim, unlink to ack)
 * are synchronous calls: each is a few system calls on small files of a local folder, cheaper
 * than a round trip through libuv's thread pool and a promise each (file:// went from ~500 to
 * several thousand tasks/s with results). Folder listings and housekeeping stay asynchronous.
 * A consumer pushes the deadline of the messages it holds forward every third of the visibility
 * timeout; a message whose deadline passed (its consumer died) is renamed back to ready/ by any
 * consumer. Priorities 0-9, higher first (as on RabbitMQ).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, renameSync, unlinkSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { mkdir, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { BrokerError } from '../errors.js';
import { fromEnvelope, parseEnvelope, readEnvelope, toEnvelope, type Envelope } from '../protocol/envelope.js';
import type { WireMessage } from '../protocol/wire-message.js';
import { fileUrlPath } from '../transport/file-url.js';
import { Signal, sleep, within } from '../transport/wait.js';
import { broadcastTopic, type Broker, type ConsumeOptions } from './broker.js';
import { Qos } from './qos.js';

const FANOUT_KEEP_MS = 60_000;
const POLL_MS = 200;
/** How long a folder listing is trusted for new claims (newer or higher-priority files wait this long at most). */
const LISTING_MAX_AGE_MS = 250;

let seq = 0;
/**
 * `<pid>-<random>`, drawn once: names stay unique between processes (and between containers whose
 * pids collide) without a random draw per message.
 */
const origin = `${process.pid}-${randomBytes(3).toString('hex')}`;
function messageName(priority: number): string {
  const p = 9 - Math.min(9, Math.max(0, Math.trunc(priority) || 0));
  seq = (seq + 1) % 1e6;
  return `${p}-${String(Date.now()).padStart(14, '0')}-${String(seq).padStart(6, '0')}-${origin}.json`;
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/**
 * Messages a consumer may claim from one queue folder: a sorted listing, then the files the
 * watch saw arrive since (a name may be gone by the time it is tried: another consumer won it).
 */
interface Candidates {
  names: string[];
  next: number;
  /** When `names` was listed from the folder (ms). */
  at: number;
  arrived: string[];
  /** The next scan lists the folder (start, a missed or nameless watch event). */
  relist: boolean;
}

/** A message this process claimed: where its file is now. */
interface Claim {
  /** `<queue>/<name>`, its key in `held`. */
  readonly key: string;
  readonly queue: string;
  readonly name: string;
  deadline: number;
}

export function createFileBroker(url = 'file://', opts: { logger?: Logger } = {}): Broker {
  const log = opts.logger?.child({ component: 'file-broker' });
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
  // Folder paths by queue, joined once (the hot path then appends `/<name>`: names have no slash).
  const dirs = new Map<string, { ready: string; unacked: string }>();
  const dirsOf = (q: string) => {
    let d = dirs.get(q);
    if (!d) dirs.set(q, (d = { ready: join(root, 'queues', q, 'ready'), unacked: join(root, 'queues', q, 'unacked') }));
    return d;
  };
  const readyDir = (q: string) => dirsOf(q).ready;
  const unackedDir = (q: string) => dirsOf(q).unacked;

  async function writeAtomically(dir: string, name: string, text: string): Promise<void> {
    if (!made.has(tmp) || !made.has(dir)) await Promise.all([ensure(tmp), ensure(dir)]);
    const t = `${tmp}/${name}`;
    writeFileSync(t, text);
    renameSync(t, `${dir}/${name}`);
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

  const broker: Broker = {
    kind: 'file',
    async connect() {
      try {
        await Promise.all([ensure(tmp), ensure(join(root, 'queues')), ensure(join(root, 'fanout'))]);
      } catch (err) {
        throw new BrokerError(`Cannot use the file broker folder ${root}: ${(err as Error).message}`, { cause: err });
      }
    },
    publish,

    async consume(queues, onDelivery, copts: ConsumeOptions) {
      const signal = AbortSignal.any([copts.signal, closed.signal]);
      await Promise.all(queues.flatMap((q) => [ensure(readyDir(q)), ensure(unackedDir(q))]));
      /** Claims this consumer holds, by `<queue>/<name>` (their deadlines are pushed forward). */
      const held = new Map<string, Claim>();
      const current = (c: Claim) => `${unackedDir(c.queue)}/${c.name}~${c.deadline}`;
      const qos = new Qos<Claim>({
        settlers: {
          async ack(c) {
            held.delete(c.key);
            try {
              unlinkSync(current(c));
            } catch (err) {
              if (isMissing(err))
                throw new BrokerError(
                  `Message ${c.name} in queue "${c.queue}" was restored to the queue before it was acknowledged (visibility timeout ${visibilityMs} ms passed)`,
                );
              throw err;
            }
          },
          async requeue(c) {
            held.delete(c.key);
            renameSync(current(c), `${readyDir(c.queue)}/${c.name.replace(/(\.r)?\.json$/, '.r.json')}`);
          },
        },
        onDelivery,
        prefetch: copts.prefetch,
        log,
        onSettled: () => changed.notify(),
      });
      const sources = new Map<string, Candidates>(queues.map((q) => [q, { names: [], next: 0, at: 0, arrived: [], relist: true }]));
      /** Names this consumer renamed out of ready/: their watch events are not new messages. */
      const taken = new Set<string>();
      const watchers: FSWatcher[] = queues.map((q) =>
        watch(readyDir(q), (_event, file) => {
          const c = sources.get(q)!;
          if (typeof file !== 'string')
            c.relist = true; // the platform did not say which file
          else if (file.endsWith('.json') && !taken.delete(file)) c.arrived.push(file);
          changed.notify();
        }),
      );
      for (const w of watchers)
        w.on('error', (err) => {
          // Polling (POLL_MS, full listings) keeps the queue served without the watch.
          log?.warn({ err }, 'watching a queue folder failed; falling back to polling');
          for (const c of sources.values()) c.relist = true;
          changed.notify();
        });
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

      /** Takes one message (false when another consumer won it) and hands it to the worker. */
      const claim = (queue: string, name: string): boolean => {
        const deadline = Date.now() + visibilityMs;
        const d = dirsOf(queue);
        const claimed = `${d.unacked}/${name}~${deadline}`;
        try {
          renameSync(`${d.ready}/${name}`, claimed);
        } catch (err) {
          if (isMissing(err)) return false; // another consumer won this message
          throw err;
        }
        taken.add(name);
        const raw = readFileSync(claimed);
        const c: Claim = { key: `${queue}/${name}`, queue, name, deadline };
        held.set(c.key, c);
        const read = readEnvelope(raw);
        if (!read.env) log?.warn({ err: read.err, queue, file: name }, 'message is not a kombu envelope; handed on raw so that the worker dead-letters it');
        qos.hand(read.message, { queue, exchange: '', routingKey: queue, redelivered: name.endsWith('.r.json') }, c);
        return true;
      };

      try {
        while (!signal.aborted) {
          // Waited on from before the scan: a new file or a settle during the scan wakes the next one.
          const woke = changed.wait();
          let room = qos.room();
          for (const q of queues) {
            if (room <= 0 || signal.aborted) break;
            const c = sources.get(q)!;
            // A full listing (O(N) for N waiting messages) only when the watch may have missed
            // something, or the listing is stale while messages wait: newly arrived files are
            // known by name from the watch, so a steady flow claims in O(1) per message.
            const stale = Date.now() - c.at > LISTING_MAX_AGE_MS && (c.next < c.names.length || c.arrived.length > 0);
            if (c.relist || stale) {
              c.relist = false;
              taken.clear(); // keeps it bounded when watch events are missed
              c.arrived = []; // the listing has them (one arriving meanwhile may be tried twice: harmless)
              c.names = (await readdir(readyDir(q))).filter((n) => n.endsWith('.json')).sort();
              c.next = 0;
              c.at = Date.now();
            }
            for (;;) {
              while (room > 0 && c.next < c.names.length && !signal.aborted) {
                if (claim(q, c.names[c.next++]!)) room--;
              }
              if (room <= 0 || signal.aborted || c.arrived.length === 0) break;
              // The listing is used up: the files that arrived since, in delivery order.
              c.names = c.arrived.sort();
              c.next = 0;
              c.arrived = [];
            }
          }
          if (signal.aborted) break;
          // Wake on a new file, on a settle, or after POLL_MS with a full listing (fs.watch can
          // miss events on some filesystems).
          if (!(await within(woke, POLL_MS))) for (const c of sources.values()) c.relist = true;
        }
      } finally {
        signal.removeEventListener('abort', abort);
        for (const w of watchers) w.close();
        await keeper;
      }
    },

    async publishDirect(exchange, routingKey, message) {
      let names: string[];
      try {
        names = await readdir(join(root, 'bindings', encodeURIComponent(exchange)));
      } catch (err) {
        if (isMissing(err)) return; // nothing bound: dropped, as kombu drops it
        throw err;
      }
      const prefix = `${encodeURIComponent(routingKey)}~`;
      for (const n of names) {
        if (!n.startsWith(prefix)) continue;
        const queue = decodeURIComponent(n.slice(prefix.length));
        await writeAtomically(readyDir(queue), messageName(0), JSON.stringify(toEnvelope(message, exchange, routingKey)));
      }
    },

    async listenDirect(spec, onMessage, outer, onReady) {
      const signal = AbortSignal.any([outer, closed.signal]);
      const dir = join(root, 'bindings', encodeURIComponent(spec.exchange));
      const binding = join(dir, `${encodeURIComponent(spec.routingKey)}~${encodeURIComponent(spec.queue)}`);
      await writeAtomically(dir, binding.slice(dir.length + 1), '');
      onReady?.();
      try {
        await broker.consume(
          [spec.queue],
          async (d) => {
            await d.ack();
            onMessage(d.message);
          },
          { prefetch: 100, signal },
        );
      } finally {
        await unlink(binding).catch((err) => {
          if (!isMissing(err)) throw err;
        });
        await broker.purge(spec.queue);
      }
    },

    async broadcast(exchange, message, routingKey) {
      const name = `${String(Date.now()).padStart(14, '0')}-${randomBytes(6).toString('hex')}.json`;
      const { routingKey: rk, message: m } = broadcastTopic(message, routingKey);
      await writeAtomically(join(root, 'fanout', exchange), name, JSON.stringify(toEnvelope(m, exchange, rk)));
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
          if (text === null) continue;
          const env = parseEnvelope(text);
          onMessage(fromEnvelope(env), env.properties.delivery_info?.routing_key ?? '');
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
  return broker;
}
