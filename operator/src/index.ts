/**
 * celeriac/operator: the operator as a library (run it in-process, plug in a replica decision,
 * build the worker Deployment a WorkerPool gets) and the TypeScript types of its CRDs.
 */
export { createOperator, type Operator, type OperatorOptions } from './operator.js';
export { loadConfig, configHelp, CONFIG_TABLE, type OperatorConfig } from './config.js';
export { createOperatorMetrics, type OperatorMetrics } from './metrics.js';
export { startHealthServer, type HealthServer } from './http-server.js';
export {
  createKubeClient,
  resources,
  resourcePath,
  type KubeClient,
  type ResourceType,
  type ListResult,
  type WatchEvent,
  type WatchOptions,
  type PatchType,
} from './k8s/kube-client.js';
export { Action, type Reconciler, type ReconcileContext } from './k8s/reconciler.js';
export { setCondition, findCondition, isConditionTrue, type ConditionInput } from './k8s/conditions.js';
export { createLeaderElector, type LeaderElector, type LeaderElectionOptions } from './k8s/leader-election.js';
export { createEventRecorder, type EventRecorder, type EventType } from './k8s/events.js';
export { fixedReplicas, type DecideReplicas, type DecideReplicasInput, type ReplicaDecision } from './reconcilers/worker-pool.js';
export {
  workerDeployment,
  workerDisruptionBudget,
  brokerEnv,
  workerArgs,
  poolSelectorString,
  type WorkerDeploymentInput,
} from './reconcilers/worker-deployment.js';
export { OperatorError, KubeApiError, TerminalError, BrokerCheckError, type BrokerCheckReason } from './errors.js';
export * from './types.js';
