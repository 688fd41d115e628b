/**
 * The worker's HTTP endpoint: /metrics (Prometheus), /healthz (alive: 503 with the reason when the
 * consumer stopped or a task blocks the event loop; see worker/watchdog.ts), /readyz (consuming: 503 once
 * draining, so a pod being scaled down leaves its Service), and /drain (GET, for a Kubernetes
 * preStop hook: stop consuming and give back prefetched messages; running tasks finish), and
 * /resume (GET: cancel a drain and consume again; the autoscaler uses it when it scales back up).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface MetricsServerHooks {
  readonly registry: Registry;
  /** Liveness: false answers 503. */
  healthy(): boolean;
  /** Why it is not healthy, for the 503's body. */
  problem?(): string | null;
  /** Readiness (consuming): false answers 503. Default: as healthy(). */
  ready?(): boolean;
  /** Starts a drain; resolves once the worker has stopped consuming. */
  drain(): Promise<void>;
  /** Cancels a drain: consume again (the autoscaler scaled back up). Absent: 404. */
  resume?(): Promise<void>;
}

export interface MetricsServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsServer(port: number, hooks: MetricsServerHooks, host = '0.0.0.0'): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (path === '/metrics') {
      hooks.registry.metrics().then(
        (text) => send(200, text, hooks.registry.contentType),
        (err: Error) => send(500, `metrics failed: ${err.message}\n`),
      );
    } else if (path === '/healthz') {
      const healthy = hooks.healthy();
      send(healthy ? 200 : 503, healthy ? 'ok\n' : `unhealthy: ${hooks.problem?.() ?? 'stopping'}\n`);
    } else if (path === '/readyz') {
      const ready = hooks.ready ? hooks.ready() : hooks.healthy();
      send(ready ? 200 : 503, ready ? 'ready\n' : 'not ready: draining or stopping\n');
    } else if (path === '/drain') {
      hooks.drain().then(
        () => send(200, 'draining: consumption stopped, running tasks finish\n'),
        (err: Error) => send(500, `drain failed: ${err.message}\n`),
      );
    } else if (path === '/resume' && hooks.resume) {
      hooks.resume().then(
        () => send(200, 'consuming again\n'),
        (err: Error) => send(409, `resume refused: ${err.message}\n`),
      );
    } else {
      send(404, 'not found: try /metrics, /healthz, /readyz, /drain or /resume\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  const shown = host === '0.0.0.0' ? 'localhost' : host;
  return {
    url: `http://${shown}:${actual}/metrics`,
    port: actual,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
