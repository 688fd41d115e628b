/**
 * memory:// result store: one process; every store with the same URL name shares the data.
 * Supports expiry and push (listen, watch), so AsyncResult.get() in the same process does not poll.
 */
import { EventEmitter } from 'node:events';
import { isSuccessMeta, watchByListen, type KeyValueStore } from './backend.js';

interface Entry {
  value: string;
  expiresAt: number;
}

const spaces = new Map<string, { data: Map<string, Entry>; events: EventEmitter }>();

export function createMemoryStore(url = 'memory://'): KeyValueStore {
  const name = url.replace(/^memory:\/\//, '') || 'default';
  let space = spaces.get(name);
  if (!space) {
    space = { data: new Map(), events: new EventEmitter() };
    space.events.setMaxListeners(0);
    spaces.set(name, space);
  }
  const { data, events } = space;
  const read = (key: string): string | null => {
    const e = data.get(key);
    if (!e) return null;
    if (e.expiresAt < Date.now()) {
      data.delete(key);
      return null;
    }
    return e.value;
  };
  const write = (key: string, value: string, ttlMs?: number) => {
    data.set(key, { value, expiresAt: ttlMs ? Date.now() + ttlMs : Number.POSITIVE_INFINITY });
    events.emit(key);
  };
  const listen = (key: string, onSet: () => void): (() => void) => {
    events.on(key, onSet);
    return () => events.off(key, onSet);
  };
  return {
    kind: 'memory',
    async get(key) {
      return read(key);
    },
    async mget(keys) {
      return keys.map(read);
    },
    async set(key, value, opts) {
      write(key, value, opts?.ttlMs);
    },
    // Checked and written at once: a read-then-set could overwrite a SUCCESS stored in between
    // (a retried run finishing before the first run's RETRY is stored).
    async setUnlessSuccess(key, value, opts) {
      if (!isSuccessMeta(read(key))) write(key, value, opts?.ttlMs);
    },
    async incr(key, opts) {
      const n = Number(read(key) ?? 0) + 1;
      write(key, String(n), opts?.ttlMs);
      return n;
    },
    async delete(key) {
      data.delete(key);
    },
    listen,
    watch: watchByListen(listen),
    async close() {},
  };
}
