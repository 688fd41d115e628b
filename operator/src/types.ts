/**
 * TypeScript types of the celeriac.io/v1alpha1 custom resources (crds/*.yaml is the source of
 * truth; these mirror it) and the small Kubernetes object shapes the operator reads as raw JSON.
 */
import type { V1EnvVar, V1ResourceRequirements, V1PodSpec } from '@kubernetes/client-node';

export const GROUP = 'celeriac.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
/** Label on every object of a pool; its value is the WorkerPool name. */
export const POOL_LABEL = 'celeriac.io/worker-pool';
/** The finalizer celeriac 0.1 put on WorkerPools; the operator now removes it wherever it sees it. */
export const LEGACY_FINALIZER = 'celeriac.io/cleanup';
export const FIELD_MANAGER = 'celeriac-operator';

/** Object metadata as the API server returns it in JSON (timestamps are RFC 3339 strings). */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  ownerReferences?: OwnerReference[];
}

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** Any Kubernetes object as raw JSON. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

/** metav1.Condition, with its timestamp as a string. */
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}

// ---------------------------------------------------------------------------------------------
// TaskQueue

export interface SecretKeyRef {
  name: string;
  key?: string;
}

export interface TaskQueueBroker {
  type: 'redis' | 'amqp';
  url?: string;
  urlSecretRef?: SecretKeyRef;
  host?: string;
  port?: number;
  database?: number;
  virtualHost?: string;
  credentialsSecretRef?: { name: string; usernameKey?: string; passwordKey?: string };
  tls?: { enabled?: boolean; insecureSkipVerify?: boolean; serverName?: string };
  /** RabbitMQ management API, for unacknowledged counts. */
  management?: { url?: string; urlSecretRef?: SecretKeyRef };
}

export interface TaskQueueSpec {
  broker: TaskQueueBroker;
  queue: { name: string; priorityLevels?: number };
  checkIntervalSeconds?: number;
}

export interface TaskQueueStatus {
  observedGeneration?: number;
  depth?: number;
  inFlight?: number;
  consumers?: number;
  lastChecked?: string;
  brokerUrl?: string;
  /** Hash of the credentials from the Secret(s) at the last successful check. */
  credentialsHash?: string;
  conditions?: Condition[];
}

export interface TaskQueue extends KubeObject {
  spec: TaskQueueSpec;
  status?: TaskQueueStatus;
}

// ---------------------------------------------------------------------------------------------
// TaskSchedule

export interface TaskScheduleSpec {
  taskQueueRef: { name: string };
  task: string;
  args?: unknown[];
  kwargs?: Record<string, unknown>;
  /** Exactly one of cron and everySeconds (CEL-checked). */
  schedule: { cron?: string; everySeconds?: number; timeZone?: string };
  catchUpSeconds?: number;
  suspend?: boolean;
  options?: { priority?: number; expiresSeconds?: number; headers?: Record<string, unknown> };
}

export interface TaskScheduleStatus {
  observedGeneration?: number;
  lastScheduleTime?: string;
  nextScheduleTime?: string;
  lastTaskId?: string;
  conditions?: Condition[];
}

export interface TaskSchedule extends KubeObject {
  spec: TaskScheduleSpec;
  status?: TaskScheduleStatus;
}

// ---------------------------------------------------------------------------------------------
// WorkerPool

/** One HPA v2 scaling policy. */
export interface ScalingPolicy {
  type: 'Pods' | 'Percent';
  value: number;
  periodSeconds: number;
}

/** autoscaling/v2 HPAScalingRules. */
export interface ScalingRules {
  stabilizationWindowSeconds?: number;
  selectPolicy?: 'Max' | 'Min' | 'Disabled';
  policies?: ScalingPolicy[];
}

export interface AutoscalingMetric {
  type: 'queueDepth' | 'inFlight' | 'prometheus';
  prometheus?: { serverAddress: string; query: string; targetAverageValue: number; activationValue?: number };
}

/** `spec.autoscaling` (shape fixed in the brief; the autoscaler owns its meaning). Absent = fixed replicas. */
export interface WorkerPoolAutoscaling {
  minReplicas?: number;
  maxReplicas: number;
  pollingIntervalSeconds?: number;
  cooldownPeriodSeconds?: number;
  activationThreshold?: number;
  targetDrainSeconds?: number;
  targetUtilization?: number;
  tasksPerReplica?: number | null;
  metrics?: AutoscalingMetric[];
  behavior?: { scaleUp?: ScalingRules; scaleDown?: ScalingRules };
  fallback?: { failureThreshold: number; replicas: number };
  /** Ask for one replica this long before the next run of a TaskSchedule on the pool's queues. */
  scheduleLeadSeconds?: number;
}

export interface WorkerPoolTemplate {
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** celeriac workers: the `-A` module (required unless spec.celery is set). */
  tasksModule?: string;
  command?: string[];
  args?: string[];
  logLevel?: string;
  env?: V1EnvVar[];
  resources?: V1ResourceRequirements;
  podTemplate?: {
    metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
    spec?: Partial<V1PodSpec>;
  };
}

/** Python Celery workers' pool implementations (`celery worker -P`). */
export type CeleryPoolKind = 'prefork' | 'threads' | 'solo' | 'gevent' | 'eventlet';

/**
 * `spec.celery`: the pool runs Python Celery workers (`celery -A <app> worker ...`) instead of
 * celeriac ones. The operator builds the command line, names each worker `celery@<pod name>` and
 * talks to it over Celery's own remote control (inspect, cancel_consumer/add_consumer) and events.
 */
export interface CelerySpec {
  /** The Celery app, as `celery -A` takes it (`proj`, `proj.celery:app`). */
  app: string;
  /** `-P`; default prefork. */
  pool?: CeleryPoolKind;
  /** `--without-mingle`; default true (mingle only slows a pod's start). */
  withoutMingle?: boolean;
  /** `--without-gossip`; default true (gossip costs a broadcast per worker event). */
  withoutGossip?: boolean;
  /**
   * `Enable`: the operator sends `enable_events` to workers that send none (as Flower does) and
   * learns arrival and service rates from task events; `Inspect`: it leaves the workers' event
   * settings alone and reads in-flight work from `inspect` only. Default Enable.
   */
  events?: 'Enable' | 'Inspect';
}

export interface WorkerPoolSpec {
  queues: string[];
  template: WorkerPoolTemplate;
  /** Set: the pods run Python Celery workers. */
  celery?: CelerySpec;
  concurrency?: number;
  prefetchMultiplier?: number;
  replicas?: number;
  metricsPort?: number;
  terminationGracePeriodSeconds?: number;
  paused?: boolean;
  podDisruptionBudget?: { enabled?: boolean; maxUnavailable?: number | string };
  autoscaling?: WorkerPoolAutoscaling;
}

/**
 * `status.autoscaling`, written by the autoscaler as a whole each poll (a key left out is removed;
 * null removes it too).
 */
export interface WorkerPoolAutoscalingStatus {
  metrics?: { name: string; value: number }[];
  desiredReplicas?: number;
  /** CamelCase: why desiredReplicas is what it is (ScaleUp, ScaleDownStabilized, FlapBackoff, ...). */
  reason?: string;
  /** The same in a sentence. */
  message?: string;
  /** Which proposal won ("work", "tasksPerReplica", a metric's name, "fallback"). */
  winner?: string;
  lastActiveTime?: string | null;
  /** Failed metric reads in a row (0 when the last read worked). */
  failures?: number;
  /** True while fallback.replicas is in force. */
  fallback?: boolean;
  /** Pods being drained before removal (empty when none). */
  draining?: string[];
  /** Scale-down stabilization window in force (above the configured one during a flap backoff). */
  scaleDownWindowSeconds?: number;
  /** Measured pod start (creation to Ready), mean of the latest pods; null (removed) until one started. */
  podStartSeconds?: number | null;
  /** Measured mean service time per task; null (removed) until a task completed. */
  serviceTimeSeconds?: number | null;
  /** True while the event trigger watches the backlog (decisions within about a second). */
  eventDriven?: boolean;
  /** Celery pools: where task rates come from (Enabled, EnabledByOperator, InspectOnly). */
  celeryEvents?: 'Enabled' | 'EnabledByOperator' | 'InspectOnly';
  [extra: string]: unknown;
}

export interface WorkerPoolStatus {
  observedGeneration?: number;
  replicas?: number;
  readyReplicas?: number;
  desiredReplicas?: number;
  selector?: string;
  lastScaleTime?: string;
  deploymentName?: string;
  autoscaling?: WorkerPoolAutoscalingStatus;
  conditions?: Condition[];
}

export interface WorkerPool extends KubeObject {
  spec: WorkerPoolSpec;
  status?: WorkerPoolStatus;
}

// ---------------------------------------------------------------------------------------------
// Built-in objects, only the fields the operator reads.

export interface Deployment extends KubeObject {
  spec?: { replicas?: number; [k: string]: unknown };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

export interface Secret extends KubeObject {
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

export interface Lease extends KubeObject {
  spec?: {
    holderIdentity?: string | null;
    leaseDurationSeconds?: number;
    acquireTime?: string | null;
    renewTime?: string | null;
    leaseTransitions?: number;
  };
}
