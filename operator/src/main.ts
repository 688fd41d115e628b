#!/usr/bin/env node
/**
 * celeriac-operator: config -> logger -> metrics -> API check -> controllers, until SIGTERM.
 * Subcommands (the autoscaler's `simulate`) are added in createProgram.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { Command, Option } from 'commander';
import { createLogger } from '../../runtime/src/logging/logger.js';
import { VERSION } from '../../runtime/src/version.js';
import { CONFIG_TABLE, loadConfig, type OperatorConfig } from './config.js';
import { ConfigError } from './errors.js';
import { checkApi } from './api-check.js';
import { startHealthServer } from './http-server.js';
import { createKubeClient } from './k8s/kube-client.js';
import { createOperatorMetrics } from './metrics.js';
import { createOperator } from './operator.js';
import { createAutoscaler } from './autoscaler/autoscaler.js';
import { simulateCommand } from './simulator/command.js';

/** Loads the KubeConfig: --kubeconfig, else in-cluster, else KUBECONFIG / ~/.kube/config. */
function loadKubeConfig(config: OperatorConfig): KubeConfig {
  const kc = new KubeConfig();
  if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
  else kc.loadFromDefault();
  return kc;
}

async function runOperator(config: OperatorConfig): Promise<void> {
  const log = createLogger({ level: config.logLevel, name: 'celeriac-operator' });
  const kubeConfig = loadKubeConfig(config);
  const kube = createKubeClient(kubeConfig);
  const metrics = createOperatorMetrics({ defaultMetrics: true });
  await checkApi(kube, { namespace: config.namespace, log });
  const autoscaler = createAutoscaler({ kube, log });

  let exiting = false;
  const exit = async (code: number, why: string) => {
    if (exiting) return;
    exiting = true;
    log.info({ why }, 'shutting down');
    await operator.stop();
    await autoscaler.close();
    await server.close();
    process.exit(code);
  };
  const operator = createOperator({
    kube,
    log,
    metrics,
    namespace: config.namespace,
    workers: config.workers,
    resyncMs: config.resyncSeconds * 1000,
    brokerCheckTimeoutMs: config.brokerCheckTimeoutMs,
    decideReplicas: autoscaler.decideReplicas,
    onWorkerPoolWake: autoscaler.onWake,
    leaderElection: config.leaderElect
      ? {
          leaseNamespace: config.leaseNamespace,
          identity: config.identity,
          leaseDurationMs: config.leaseDurationSeconds * 1000,
          renewDeadlineMs: config.renewDeadlineSeconds * 1000,
          retryPeriodMs: config.retryPeriodSeconds * 1000,
        }
      : undefined,
    // A leader that lost its Lease may hold stale state; exit so the pod restarts clean.
    onLeadershipLost: () => void exit(1, 'leadership lost'),
  });
  const server = await startHealthServer({ port: config.metricsPort, host: config.metricsHost, registry: metrics.registry, ready: () => operator.ready });
  log.info({ port: server.port, namespace: config.namespace ?? '(all)', leaderElect: config.leaderElect }, 'celeriac-operator starting');
  process.once('SIGTERM', () => void exit(0, 'SIGTERM'));
  process.once('SIGINT', () => void exit(0, 'SIGINT'));
  await operator.start();
}

function createProgram(): Command {
  const program = new Command('celeriac-operator')
    .description('Runs celeriac WorkerPools and TaskQueues on Kubernetes (celeriac.io/v1alpha1).')
    .version(VERSION, '-V, --version', 'print the celeriac-operator version')
    .showHelpAfterError();
  for (const e of CONFIG_TABLE) {
    const envs = e.env.join(', ');
    const defaultText = e.default !== undefined ? `; default ${String(e.default)}` : '';
    const flags = e.kind === 'bool' ? `--${e.flag}` : `--${e.flag} <value>`;
    program.addOption(new Option(flags, `${e.doc} [env ${envs}${defaultText}]`));
  }
  program.action(async (opts: Record<string, string | boolean | undefined>) => {
    let config: OperatorConfig;
    try {
      config = loadConfig(opts);
    } catch (err) {
      if (err instanceof ConfigError) {
        console.error(err.message);
        process.exit(2);
      }
      throw err;
    }
    await runOperator(config);
  });
  // Subcommands register here (e.g. the autoscaler's `simulate`).
  program.addCommand(simulateCommand());
  return program;
}

createProgram()
  .parseAsync(process.argv)
  .catch((err: unknown) => {
    console.error(err instanceof Error ? `celeriac-operator: ${err.message}` : err);
    process.exit(1);
  });
