/** A task run as the worker hands it to trace() or a pool: a JSON task message of `task`, delivered on `celery`. */
import pino from 'pino';
import type { Task } from '../../runtime/src/app/task.js';
import { TaskControl, type TraceInput } from '../../runtime/src/pools/trace.js';
import { acceptedContentTypes } from '../../runtime/src/protocol/serializers.js';
import { decodeTask, encodeTask } from '../../runtime/src/protocol/task-message.js';

export function traceInput(task: Task, o: { id?: string; retries?: number } = {}): TraceInput {
  const req = decodeTask(
    encodeTask({ id: o.id ?? 'id-1', name: task.name, args: [], kwargs: {}, retries: o.retries ?? 0, origin: 'test', serializer: 'json' }),
    acceptedContentTypes(['json']),
  );
  return {
    task,
    req,
    info: { queue: 'celery', exchange: '', routingKey: 'celery', redelivered: false },
    hostname: 'w@h',
    log: pino({ level: 'silent' }),
    ctl: new TaskControl(),
  };
}
