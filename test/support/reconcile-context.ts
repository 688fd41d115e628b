/**
 * A ReconcileContext for unit tests of reconcilers: the given KubeClient (usually the in-memory
 * one, memory-kube.ts), a silent logger, a fixed clock, and an EventRecorder that keeps what was
 * recorded as `"<type> <reason>"` lines (plus the full records) for assertions.
 */
import { pino } from 'pino';
import type { EventRecorder, EventType } from '../../operator/src/k8s/events.js';
import type { KubeClient } from '../../operator/src/k8s/kube-client.js';
import type { ReconcileContext } from '../../operator/src/k8s/reconciler.js';
import type { KubeObject } from '../../operator/src/types.js';

export interface RecordedEvent {
  object: string;
  type: EventType;
  reason: string;
  message: string;
}

export interface TestContext {
  ctx: ReconcileContext;
  /** Every Event recorded, in order. */
  events: RecordedEvent[];
  /** The recorded Events as `"<type> <reason>"`, e.g. "Warning TaskQueueNotFound". */
  eventLines(): string[];
}

export const TEST_NOW = new Date('2026-01-01T00:00:00Z');

export function testContext(kube: KubeClient, o: { now?: Date; attempt?: number } = {}): TestContext {
  const events: RecordedEvent[] = [];
  const recorder: EventRecorder = {
    record(obj: KubeObject, type: EventType, reason: string, message: string) {
      events.push({ object: `${obj.kind}/${obj.metadata.namespace}/${obj.metadata.name}`, type, reason, message });
    },
    flush: async () => undefined,
  };
  const ctx: ReconcileContext = {
    kube,
    log: pino({ level: 'silent' }),
    events: recorder,
    reconcileId: 'test',
    attempt: o.attempt ?? 0,
    now: () => o.now ?? TEST_NOW,
  };
  return { ctx, events, eventLines: () => events.map((e) => `${e.type} ${e.reason}`) };
}
