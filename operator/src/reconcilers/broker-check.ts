/**
 * Checks a TaskQueue's broker the way a worker would reach it: resolves the URL and credentials
 * (Secrets included), connects (Redis: TCP + AUTH + PING with ioredis; AMQP: amqplib handshake),
 * and reads the queue's depth. Each failure is a BrokerCheckError whose reason and message say
 * what to fix. Depth reading on Redis is the autoscaler's metric source (one definition of depth).
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import amqp from 'amqplib';
import { BrokerCheckError } from '../errors.js';
import { isAuthenticationError, redactText, redactUrl } from '../../../runtime/src/errors.js';
import { resources, type KubeClient } from '../k8s/kube-client.js';
import { createAmqpQueueSource } from '../metric-sources/amqp-queue.js';
import { createRedisListSource } from '../metric-sources/redis-list.js';
import type { Secret, TaskQueue, TaskQueueBroker } from '../types.js';

export interface BrokerCheckResult {
  /** The URL used, password redacted. */
  url: string;
  depth: number;
  inFlight?: number;
  consumers?: number;
  /** Extra information for the Ready message (e.g. queue not declared yet). */
  note?: string;
}

const DEFAULT_PORTS = { redis: 6379, rediss: 6380, amqp: 5672, amqps: 5671 } as const;

async function secretValue(kube: KubeClient, namespace: string, name: string, key: string, field: string): Promise<string> {
  const secret = await kube.get<Secret>(resources.secrets, namespace, name);
  if (!secret) {
    throw new BrokerCheckError('SecretNotFound', `Secret "${name}" (${field}) not found in namespace "${namespace}"; create it or fix ${field}.name`);
  }
  const raw = secret.data?.[key];
  if (raw === undefined) {
    const keys = Object.keys(secret.data ?? {});
    throw new BrokerCheckError('SecretKeyMissing', `Secret "${name}" has no key "${key}" (${field}); it has: ${keys.join(', ') || 'no keys'}`);
  }
  return Buffer.from(raw, 'base64').toString('utf8');
}

/** The broker URL with real credentials (for connecting; never log it unredacted). */
export async function resolveBrokerUrl(kube: KubeClient, tq: TaskQueue): Promise<URL> {
  const b: TaskQueueBroker = tq.spec.broker;
  const ns = tq.metadata.namespace ?? 'default';
  let text: string;
  let source: string;
  if (b.urlSecretRef) {
    const key = b.urlSecretRef.key ?? 'url';
    text = (await secretValue(kube, ns, b.urlSecretRef.name, key, 'spec.broker.urlSecretRef')).trim();
    source = `Secret "${b.urlSecretRef.name}" key "${key}"`;
  } else if (b.url) {
    text = b.url;
    source = 'spec.broker.url';
  } else {
    const tls = b.tls?.enabled === true;
    const scheme = b.type === 'redis' ? (tls ? 'rediss' : 'redis') : tls ? 'amqps' : 'amqp';
    const host = b.host ?? '';
    const path = b.type === 'redis' ? `/${b.database ?? 0}` : `/${encodeURIComponent(b.virtualHost ?? '/')}`;
    text = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${b.port ?? DEFAULT_PORTS[scheme]}${path}`;
    source = 'spec.broker.host';
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new BrokerCheckError('InvalidURL', `${source} is not a valid URL: "${redactUrl(text)}"`, { cause: err });
  }
  const want = b.type === 'redis' ? ['redis:', 'rediss:'] : ['amqp:', 'amqps:'];
  if (!want.includes(url.protocol)) {
    throw new BrokerCheckError(
      'InvalidURL',
      `${source}: scheme "${url.protocol}" does not match broker type "${b.type}" (expected ${want.map((s) => s + '//').join(' or ')})`,
    );
  }
  if (!url.hostname) throw new BrokerCheckError('InvalidURL', `${source}: the URL has no host: "${redactUrl(text)}"`);
  if (b.credentialsSecretRef) {
    const c = b.credentialsSecretRef;
    url.username = encodeURIComponent(await secretValue(kube, ns, c.name, c.usernameKey ?? 'username', 'spec.broker.credentialsSecretRef'));
    url.password = encodeURIComponent(await secretValue(kube, ns, c.name, c.passwordKey ?? 'password', 'spec.broker.credentialsSecretRef'));
  }
  return url;
}

/**
 * The RabbitMQ management API URL of an amqp TaskQueue with `spec.broker.management`, or null.
 * A URL without credentials gets the broker's (`brokerUrl`, as resolved with its Secrets).
 */
export async function resolveManagementUrl(kube: KubeClient, tq: TaskQueue, brokerUrl: URL): Promise<URL | null> {
  const m = tq.spec.broker.management;
  if (tq.spec.broker.type !== 'amqp' || !m) return null;
  const ns = tq.metadata.namespace ?? 'default';
  const text = m.urlSecretRef
    ? (await secretValue(kube, ns, m.urlSecretRef.name, m.urlSecretRef.key ?? 'url', 'spec.broker.management.urlSecretRef')).trim()
    : (m.url ?? '');
  let url: URL;
  try {
    url = new URL(text);
  } catch (err) {
    throw new BrokerCheckError('InvalidURL', `spec.broker.management: not a valid URL: "${redactUrl(text)}"`, { cause: err });
  }
  if (!url.username && brokerUrl.username) {
    url.username = brokerUrl.username;
    url.password = brokerUrl.password;
  }
  return url;
}

function classify(err: unknown, url: URL, timeoutMs: number): BrokerCheckError {
  const e = err as { code?: string; message?: string };
  // Driver messages can quote the URL they were given.
  const msg = redactText(e.message ?? String(err));
  const where = redactUrl(url.toString());
  if (isAuthenticationError(err)) {
    return new BrokerCheckError('AuthenticationFailed', `authentication to ${where} failed: ${msg}; check the credentials in the Secret`, { cause: err });
  }
  if (e.code === 'ETIMEDOUT' || /timed? ?out/i.test(msg)) {
    return new BrokerCheckError('Timeout', `no answer from ${where} within ${timeoutMs} ms: ${msg}`, { cause: err });
  }
  if (e.code && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'].includes(e.code)) {
    return new BrokerCheckError('Unreachable', `cannot connect to ${where}: ${e.code} (${msg}); check host, port and network policies`, { cause: err });
  }
  return new BrokerCheckError('ProtocolError', `broker at ${where} failed: ${msg}`, { cause: err });
}

async function checkRedis(url: URL, tq: TaskQueue, timeoutMs: number): Promise<BrokerCheckResult> {
  const tls = url.protocol === 'rediss:' || tq.spec.broker.tls?.enabled === true;
  const tlsOptions = tls ? { rejectUnauthorized: tq.spec.broker.tls?.insecureSkipVerify !== true, servername: tq.spec.broker.tls?.serverName } : undefined;
  const redis = new Redis(url.toString(), {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    ...(tlsOptions ? { tls: tlsOptions } : {}),
  });
  let lastError: unknown;
  // ioredis also reports errors as events; keep the last one for the message (connect() may
  // reject with a generic "Connection is closed").
  redis.on('error', (err) => {
    lastError = err;
  });
  try {
    await redis.connect();
    await redis.ping();
    // Depth as kombu stores it (priority sub-lists) and in-flight (the `unacked` hash), read the
    // way the autoscaler reads them.
    const source = createRedisListSource({ url: url.toString(), queues: [tq.spec.queue.name], timeoutMs, tls: tlsOptions });
    try {
      const v = await source.read(AbortSignal.timeout(timeoutMs));
      return { url: redactUrl(url.toString()), depth: v.detail?.ready ?? v.value, inFlight: v.detail?.unacked };
    } finally {
      await source.close();
    }
  } catch (err) {
    throw classify(lastError && /closed/i.test(String((err as Error).message)) ? lastError : err, url, timeoutMs);
  } finally {
    redis.disconnect();
  }
}

async function checkAmqp(url: URL, managementUrl: URL | null, tq: TaskQueue, timeoutMs: number): Promise<BrokerCheckResult> {
  let conn: amqp.ChannelModel | undefined;
  try {
    conn = await amqp.connect(url.toString(), {
      timeout: timeoutMs,
      ...(tq.spec.broker.tls?.insecureSkipVerify ? { rejectUnauthorized: false } : {}),
      ...(tq.spec.broker.tls?.serverName ? { servername: tq.spec.broker.tls.serverName } : {}),
    });
    conn.on('error', () => {
      // Reported through the rejected operation below; the connection is closed in finally.
    });
    const ch = await conn.createChannel();
    ch.on('error', () => {
      // checkQueue on a missing queue closes the channel with 404; handled where it rejects.
    });
    let result: BrokerCheckResult;
    try {
      const q = await ch.checkQueue(tq.spec.queue.name);
      result = { url: redactUrl(url.toString()), depth: q.messageCount, consumers: q.consumerCount };
    } catch (err) {
      if (!/NOT_FOUND|404/.test(String((err as Error).message))) throw err;
      return {
        url: redactUrl(url.toString()),
        depth: 0,
        consumers: 0,
        note: `queue "${tq.spec.queue.name}" is not declared yet (workers declare it when they start)`,
      };
    }
    if (managementUrl) {
      // Unacknowledged messages are only visible to the management API; read as the autoscaler does.
      const source = createAmqpQueueSource({ url: url.toString(), queues: [tq.spec.queue.name], managementUrl: managementUrl.toString(), timeoutMs });
      try {
        const v = await source.read(AbortSignal.timeout(timeoutMs));
        result.inFlight = v.detail?.unacked;
      } catch (err) {
        result.note = `management API not readable (${(err as Error).message}); in-flight unknown`;
      } finally {
        await source.close();
      }
    }
    return result;
  } catch (err) {
    throw classify(err, url, timeoutMs);
  } finally {
    await conn?.close().catch(() => {
      // Already closed by the broker after a failure: nothing left to release.
    });
  }
}

/** Resolves the URL and checks the broker. Problems with the broker or its settings throw BrokerCheckError; API errors (reading the Secret) propagate. */
export async function checkBroker(kube: KubeClient, tq: TaskQueue, o: { timeoutMs?: number } = {}): Promise<BrokerCheckResult> {
  const timeoutMs = o.timeoutMs ?? 5000;
  const url = await resolveBrokerUrl(kube, tq);
  if (tq.spec.broker.type === 'redis') return checkRedis(url, tq, timeoutMs);
  return checkAmqp(url, await resolveManagementUrl(kube, tq, url), tq, timeoutMs);
}

function hashOf(tq: TaskQueue, url: URL): string | null {
  const b = tq.spec.broker;
  if (!b.urlSecretRef && !b.credentialsSecretRef) return null;
  return createHash('sha256').update(url.toString()).digest('hex').slice(0, 16);
}

/**
 * A short hash of the broker URL with the credentials from the TaskQueue's Secret(s), or null when
 * no Secret is used or it cannot be read. Worker pods carry it as an annotation, so rotating the
 * Secret rolls the pods (the worker reads CELERIAC_BROKER_URL only at start).
 */
export async function credentialsHash(kube: KubeClient, tq: TaskQueue): Promise<string | null> {
  try {
    return hashOf(tq, await resolveBrokerUrl(kube, tq));
  } catch (err) {
    if (err instanceof BrokerCheckError) return null; // reported by the TaskQueue's own condition
    throw err;
  }
}
