/**
 * kombu's Redis transport layout (spec §3.2-§3.5), written once: the key names and value shapes
 * that Python Celery, Flower and celeriac share in Redis. Used by the Redis broker (and its Lua
 * scripts) and by the operator's redis-list metric source.
 */

/** kombu's separator inside list names and binding members (bytes 0x06 0x16). */
export const SEP = '\x06\x16';
/** kombu's default priority steps: one list per step; step 0 is consumed first. */
export const PRIORITY_STEPS = [0, 3, 6, 9] as const;
/** Ack emulation (spec §3.5): tag -> JSON `[envelope, exchange, routing_key]`. */
export const UNACKED = 'unacked';
/** Ack emulation: tag -> epoch seconds of the delivery (or of its last renewal). */
export const UNACKED_INDEX = 'unacked_index';
/** Held by a Python worker while it restores stale unacked messages. */
export const UNACKED_MUTEX = 'unacked_mutex';

/** The step a priority falls in: the largest step <= priority (clamped to 0..9). */
export function priorityStep(priority: unknown): number {
  if (priority === undefined || priority === 0) return 0; // most messages: skip the conversion
  const p = Math.min(9, Math.max(0, Number(priority) || 0));
  let step = 0;
  for (const s of PRIORITY_STEPS) if (s <= p) step = s;
  return step;
}

/** The list holding `queue`'s messages of one step: `queue` for step 0, else `queue␆␖<step>`. */
export function stepList(queue: string, step: number): string {
  return step === 0 ? queue : `${queue}${SEP}${step}`;
}

/** The list holding `queue`'s messages of `priority`. */
export function listFor(queue: string, priority: unknown): string {
  return stepList(queue, priorityStep(priority));
}

/** Every list of `queue`, in consumption order (step 0 first). */
export function queueLists(queue: string): string[] {
  return PRIORITY_STEPS.map((s) => stepList(queue, s));
}

/** The queue a list belongs to (everything before the last separator). */
export function queueOfList(list: string): string {
  const i = list.lastIndexOf(SEP);
  return i < 0 ? list : list.slice(0, i);
}

/** The set holding the bindings of `exchange`. */
export function bindingKey(exchange: string): string {
  return `_kombu.binding.${exchange}`;
}

/** A binding member: `routing_key␆␖pattern␆␖queue` (pattern empty for direct and fanout). */
export function bindingMember(routingKey: string, queue: string, pattern = ''): string {
  return `${routingKey}${SEP}${pattern}${SEP}${queue}`;
}

/** The PUB/SUB channel prefix of database `db` (kombu's `keyprefix_fanout`, spec §3.4). */
export function fanoutPrefix(db: number): string {
  return `/${db}.`;
}

/** The `unacked` value of a delivery: the envelope text as received, its exchange and routing key. */
export function unackedEntry(envelopeText: string, exchange: string, routingKey: string): string {
  return `[${envelopeText}, ${JSON.stringify(exchange)}, ${JSON.stringify(routingKey)}]`;
}

/** The routing key of an `unacked` value, or null when the value is not kombu's array. */
export function unackedRoutingKey(value: string): string | null {
  try {
    const entry = JSON.parse(value) as unknown;
    return Array.isArray(entry) && typeof entry[2] === 'string' ? entry[2] : null;
  } catch {
    return null; // a value another program wrote: not one of kombu's entries
  }
}

/** SEP as a Lua string escape, for the broker's scripts. */
export const LUA_SEP = [...SEP].map((c) => `\\${c.charCodeAt(0)}`).join('');
