/**
 * RabbitMQ queue depth.
 *
 * - Over AMQP (always): a passive declare (`checkQueue`) per queue gives the ready count and the
 *   consumer count; a queue not declared yet counts 0. One connection, reopened after a failure.
 * - Over the management API (when `managementUrl` is set, e.g. http://user:pass@rabbit:15672):
 *   `GET /api/queues/<vhost>/<queue>` adds `messages_unacknowledged` (KEDA's HTTP mode; AMQP alone
 *   cannot see unacked messages, kedacore/keda #638).
 * `value` = ready messages; `detail` = { ready, consumers, unacked? }.
 */
import amqp from 'amqplib';
import { redactUrl } from '../../../runtime/src/errors.js';
import { abortable, MetricSourceError, type MetricSource, type MetricValue } from './source.js';

export interface AmqpQueueOptions {
  url: string;
  queues: readonly string[];
  managementUrl?: string;
  timeoutMs?: number;
}

export function createAmqpQueueSource(o: AmqpQueueOptions): MetricSource {
  const timeoutMs = o.timeoutMs ?? 5000;
  let conn: amqp.ChannelModel | null = null;

  async function connection(): Promise<amqp.ChannelModel> {
    if (conn) return conn;
    const c = await amqp.connect(o.url, { timeout: timeoutMs });
    c.on('error', () => {
      // The close event below forgets the connection; the next read reconnects and reports.
    });
    c.on('close', () => {
      if (conn === c) conn = null;
    });
    conn = c;
    return c;
  }

  async function ready(queue: string): Promise<{ ready: number; consumers: number }> {
    const c = await connection();
    // A channel per check: a 404 on a missing queue closes the channel, not the connection.
    const ch = await c.createChannel();
    ch.on('error', () => {
      // A missing queue closes the channel with 404; the rejected checkQueue reports it.
    });
    try {
      const q = await ch.checkQueue(queue);
      return { ready: q.messageCount, consumers: q.consumerCount };
    } catch (err) {
      if (/NOT_FOUND|404/.test(String((err as Error).message))) return { ready: 0, consumers: 0 };
      throw err;
    } finally {
      await ch.close().catch(() => {
        // Closed by the broker already (404): nothing to release.
      });
    }
  }

  async function unacked(queue: string, signal: AbortSignal): Promise<number> {
    const base = new URL(o.managementUrl!);
    const vhost = decodeURIComponent(new URL(o.url).pathname.slice(1) || '/');
    const url = new URL(`/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`, base);
    const headers: Record<string, string> = {};
    if (base.username)
      headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(base.username)}:${decodeURIComponent(base.password)}`).toString('base64')}`;
    url.username = '';
    url.password = '';
    const res = await fetch(url, { headers, signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
    if (res.status === 404) return 0;
    if (!res.ok) throw new Error(`management API ${res.status} ${res.statusText} for ${queue}`);
    const body = (await res.json()) as { messages_unacknowledged?: number };
    return body.messages_unacknowledged ?? 0;
  }

  async function readOnce(signal: AbortSignal): Promise<MetricValue> {
    let total = 0;
    let consumers = 0;
    let unackedTotal = 0;
    for (const q of o.queues) {
      const r = await ready(q);
      total += r.ready;
      consumers += r.consumers;
      if (o.managementUrl) unackedTotal += await unacked(q, signal);
    }
    const detail: Record<string, number> = { ready: total, consumers };
    if (o.managementUrl) detail.unacked = unackedTotal;
    return { value: total, detail };
  }

  return {
    kind: 'amqp-queue',
    async read(signal) {
      try {
        return await abortable(readOnce(signal), signal, 'amqp-queue');
      } catch (err) {
        if (err instanceof MetricSourceError) throw err;
        throw new MetricSourceError('amqp-queue', `reading ${o.queues.join(', ')} at ${redactUrl(o.url)} failed: ${(err as Error).message}`, { cause: err });
      }
    },
    async close() {
      const c = conn;
      conn = null;
      await c?.close().catch(() => {
        // Already closed by the broker: nothing to release.
      });
    },
  };
}
