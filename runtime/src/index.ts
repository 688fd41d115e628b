/**
 * celeriac: a Celery-protocol task queue for TypeScript. The front door of the library.
 *
 * ```ts
 * import { createApp } from 'celeriac';
 * export const app = createApp({ name: 'shop', broker: 'redis://localhost:6379/0' });
 * export const add = app.task('shop.add', (a: number, b: number) => a + b);
 * const r = await add.delay(2, 3);
 * await r.get({ timeout: 10_000 }); // 5
 * ```
 */
export { createApp, type App, type AppOptions } from './app/app.js';
export { loadConfig, CONFIG_KEYS, configTable, type Config, type ConfigKey, type ConfigSources, type ConfigValueKind } from './app/config.js';
export { AsyncResult, type ResultHost, type ResultSet } from './app/result.js';
export type { Control, ControlCommandSpec, ControlContext, BroadcastOptions, InspectOptions, NodeReply, StatsReply } from './app/control.js';
export type { RequestInfo, ScheduledInfo, QueueInfo, OkReply } from './protocol/control.js';
export type { Task, TaskOptions, ApplyOptions, TaskContext, TaskFn, ChildCall, StateUpdate, TaskBase, TaskHooks, ErrorHook } from './app/task.js';
export type { Signals, SignalArgs, SignalName, SignalHandler, PublishArgs } from './app/signals.js';
export type { Component, ComponentContext } from './app/components.js';
export type { ParamNames, KwargsOf } from './app/arguments.js';
export type { Routes, Router, RouterFn, RouteMap, Route, RouteOptions } from './app/routes.js';
export type { SendOptions } from './app/send.js';
export type { BeatEntry, BeatSchedule, Schedule } from './app/beat-schedule.js';
export { crontab, every, type CrontabFields } from './beat/schedules.js';
export { createBeat, type Beat, type BeatOptions } from './beat/scheduler.js';
export { createScheduleStore, type ScheduleStore, type ScheduleStoreOptions } from './beat/schedule-store.js';
export { CANVAS_TASKS, signature, immutable, withOptions, clone, link, linkError, xmap, xstarmap, chunks, type SubtaskType } from './canvas/signature.js';
export { chain, pipe } from './canvas/chain.js';
export { group, GroupResult, type GroupHost } from './canvas/group.js';
export { chord } from './canvas/chord.js';
export { applySignature, type ApplyCall, type CanvasHost, type CanvasResult } from './canvas/apply.js';
export { SoftTimeLimitExceeded, TimeLimitExceeded } from './pools/trace.js';
export { receiveEvents, type ReceivedEvent, type ReceiveOptions } from './events/receiver.js';
export { EventState, type TaskView, type WorkerView } from './events/state.js';
export type { EventDispatcher } from './events/dispatcher.js';
export type { CeleryEvent } from './protocol/events.js';
export { States, READY_STATES, type TaskMeta, type TaskState } from './protocol/result-meta.js';
export type { SignatureDict, TaskRequest, Embed } from './protocol/task-message.js';
export type { Broker, Delivery, DeliveryInfo, ConsumeOptions, DirectListen } from './brokers/broker.js';
export type { WireMessage } from './protocol/wire-message.js';
export type { KeyValueStore, ChordKeys } from './backends/backend.js';
export type { ResultBackend, ChordStore, ChordPart, ChordJoin, SavedResult, StoreContext, WaitOptions } from './backends/result-backend.js';
export type { CompressionName } from './protocol/compression.js';
export type { SerializerName, TaskSerializerName } from './protocol/serializers.js';
export type { SignatureFormat } from './protocol/signing.js';
export {
  CeleriacError,
  ConfigError,
  ComponentStartError,
  ProtocolError,
  ContentDisallowedError,
  NotRegisteredError,
  TaskFailedError,
  TaskRevokedError,
  CanvasError,
  ChordError,
  ResultTimeoutError,
  BrokerError,
  BackendError,
  TaskPredicate,
  Retry,
  Reject,
  Ignore,
} from './errors.js';
