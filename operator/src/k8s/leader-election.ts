/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does
 * (client-node has no helper): try to acquire or renew every retryPeriod; a lease held by another
 * identity counts as expired only after leaseDuration has passed on OUR clock since we last saw its
 * record change (no cross-node clock comparison); a leader that cannot renew within renewDeadline
 * steps down; on a clean stop the leader releases the lease so a standby takes over at once.
 * Optimistic concurrency (resourceVersion) makes two candidates unable to both win.
 */
import type { Logger } from 'pino';
import { isKubeStatus } from '../errors.js';
import type { Lease } from '../types.js';
import { sleep } from '../../../runtime/src/transport/wait.js';
import { resources, type KubeClient } from './kube-client.js';

export interface LeaderElectionOptions {
  kube: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  log: Logger;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /**
   * Called once when this instance becomes leader; `signal` aborts when leadership ends. On a
   * clean stop the lease is released only after the returned promise settles (work finished).
   */
  onStartedLeading(signal: AbortSignal): void | Promise<unknown>;
  /** Called when leadership ends (lost or released). */
  onStoppedLeading(reason: 'lost' | 'released'): void;
}

export interface LeaderElector {
  readonly isLeader: boolean;
  /** Campaigns until `signal` aborts (then releases the lease) or leadership is lost. */
  run(signal: AbortSignal): Promise<'lost' | 'released' | 'stopped'>;
}

/** MicroTime as the API server writes it (RFC 3339 with 6 fractional digits). */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Creates an elector for the Lease `namespace/name`; `run(signal)` campaigns. */
export function createLeaderElector(o: LeaderElectionOptions): LeaderElector {
  const leaseDurationMs = o.leaseDurationMs ?? 15_000;
  const renewDeadlineMs = o.renewDeadlineMs ?? 10_000;
  const retryPeriodMs = o.retryPeriodMs ?? 2_000;
  const log = o.log.child({ component: 'leader-election', lease: `${o.namespace}/${o.name}`, identity: o.identity });
  let leader = false;
  let observed: { key: string; at: number } | null = null;

  function recordKey(l: Lease): string {
    const s = l.spec ?? {};
    return `${s.holderIdentity ?? ''}|${s.renewTime ?? ''}|${s.acquireTime ?? ''}|${s.leaseTransitions ?? 0}`;
  }

  /** One attempt; true when we hold the lease afterwards. */
  async function tryAcquireOrRenew(): Promise<boolean> {
    const now = new Date();
    const durationSeconds = Math.max(1, Math.round(leaseDurationMs / 1000));
    const current = await o.kube.get<Lease>(resources.leases, o.namespace, o.name);
    if (!current) {
      try {
        await o.kube.create<Lease>(resources.leases, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: o.name, namespace: o.namespace },
          spec: {
            holderIdentity: o.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        });
        return true;
      } catch (err) {
        if (isKubeStatus(err, 409)) return false; // another candidate created it first
        throw err;
      }
    }
    const key = recordKey(current);
    if (!observed || observed.key !== key) observed = { key, at: Date.now() };
    const spec = current.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const heldByOther = holder !== '' && holder !== o.identity;
    const theirDurationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    if (heldByOther && observed.at + theirDurationMs > Date.now()) return false;
    const renewing = holder === o.identity;
    try {
      const updated = await o.kube.replace<Lease>(resources.leases, {
        ...current,
        spec: {
          holderIdentity: o.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: renewing && spec.acquireTime ? spec.acquireTime : microTime(now),
          renewTime: microTime(now),
          leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing ? 0 : 1),
        },
      });
      observed = { key: recordKey(updated), at: Date.now() };
      return true;
    } catch (err) {
      if (isKubeStatus(err, 409)) return false;
      throw err;
    }
  }

  async function release(): Promise<void> {
    const current = await o.kube.get<Lease>(resources.leases, o.namespace, o.name);
    if (!current || current.spec?.holderIdentity !== o.identity) return;
    await o.kube.replace<Lease>(resources.leases, {
      ...current,
      spec: { ...current.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(new Date()) },
    });
  }

  async function attempt(): Promise<boolean> {
    try {
      return await tryAcquireOrRenew();
    } catch (err) {
      // API trouble counts as a failed attempt; the renew deadline decides when to give up.
      log.warn({ err }, 'lease acquire/renew failed');
      return false;
    }
  }

  return {
    get isLeader() {
      return leader;
    },
    async run(signal) {
      log.info('campaigning for leadership');
      while (!signal.aborted) {
        if (await attempt()) break;
        await sleep(jitter(retryPeriodMs), signal);
      }
      if (signal.aborted) return 'stopped';
      leader = true;
      log.info('became leader');
      const leading = new AbortController();
      const work = Promise.resolve(o.onStartedLeading(leading.signal));
      let lastRenew = Date.now();
      let outcome: 'lost' | 'released' = 'lost';
      while (true) {
        await sleep(retryPeriodMs, signal);
        if (signal.aborted) {
          outcome = 'released';
          break;
        }
        if (await attempt()) lastRenew = Date.now();
        else if (Date.now() - lastRenew > renewDeadlineMs) break;
      }
      leading.abort();
      if (outcome === 'released') {
        await work.catch((err: unknown) => log.error({ err }, 'leader work failed while stopping'));
        leader = false;
        try {
          await release();
          log.info('released leadership');
        } catch (err) {
          // The lease then expires after its duration; a standby takes over a bit later.
          log.warn({ err }, 'could not release the lease');
        }
      } else {
        leader = false;
        log.error({ renewDeadlineMs }, 'lost leadership: could not renew the lease in time');
      }
      o.onStoppedLeading(outcome);
      return outcome;
    },
  };
}

function jitter(ms: number): number {
  return ms * (1 + Math.random() * 1.2);
}
