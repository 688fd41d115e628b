/**
 * Any PromQL query over the Prometheus HTTP API (`GET <server>/api/v1/query?query=`): the value
 * is the sum of the returned samples (vector or scalar), as the HPA sums an External metric.
 * An empty vector reads as 0.
 */
import { abortable, MetricSourceError, type MetricSource } from './source.js';

export interface PrometheusOptions {
  serverAddress: string;
  query: string;
  timeoutMs?: number;
}

interface QueryResponse {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: 'vector' | 'scalar' | 'matrix' | 'string'; result: unknown };
}

export function createPrometheusSource(o: PrometheusOptions): MetricSource {
  const timeoutMs = o.timeoutMs ?? 5000;
  async function readOnce(signal: AbortSignal): Promise<number> {
    const url = new URL('/api/v1/query', o.serverAddress);
    url.searchParams.set('query', o.query);
    const res = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) });
    const body = (await res.json().catch(() => null)) as QueryResponse | null;
    if (!res.ok || !body || body.status !== 'success' || !body.data) {
      throw new Error(`${res.status} ${body?.error ?? res.statusText}`);
    }
    const { resultType, result } = body.data;
    if (resultType === 'scalar') return Number((result as [number, string])[1]);
    if (resultType === 'vector') return (result as { value: [number, string] }[]).reduce((sum, r) => sum + Number(r.value[1]), 0);
    throw new Error(`the query returns a ${resultType}; use an instant vector or scalar`);
  }
  return {
    kind: 'prometheus',
    async read(signal) {
      try {
        const value = await abortable(readOnce(signal), signal, 'prometheus');
        if (!Number.isFinite(value)) throw new Error(`the query returned ${value}`);
        return { value };
      } catch (err) {
        if (err instanceof MetricSourceError) throw err;
        throw new MetricSourceError('prometheus', `query ${JSON.stringify(o.query)} at ${o.serverAddress} failed: ${(err as Error).message}`, { cause: err });
      }
    },
    async close() {},
  };
}
