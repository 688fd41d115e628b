/**
 * User components: services a user starts with the worker and stops with it (Celery's bootsteps
 * `StartStopStep`), declared in the tasks module with `app.component({...})`. Each names what it
 * `requires` (started first, stopped after it) and what it must start `before`; the worker starts
 * them in that order once its broker, result backend and pool are up and before it consumes, and
 * stops them in reverse after the consumer has stopped and the running tasks have finished, so a
 * task always finds them started. A failing start stops the worker with the component's name.
 *
 * Components run in the worker process. A task in a threads or processes runner has its own copy
 * of the module: open per-runner resources in a `workerProcessInit` signal handler instead (as
 * Celery's prefork children do).
 */
import type { Logger } from 'pino';
import { ComponentStartError, ConfigError } from '../errors.js';

/** The worker's own services, started before any user component: a component may require them. */
export const WORKER_SERVICES = ['broker', 'backend', 'pool'] as const;
/** The worker's services started after the user components (a component is always before them). */
export const CONSUMING_SERVICES = ['events', 'consumer', 'control', 'metrics'] as const;

/** What a component's start() gets. */
export interface ComponentContext {
  /** The worker's node name. */
  readonly hostname: string;
  /** A logger bound to `{ component: <name> }`. */
  readonly log: Logger;
}

/** A service started with the worker and stopped with it. */
export interface Component {
  /** Unique among the app's components; used in logs, errors and others' `requires`/`before`. */
  readonly name: string;
  /** Components (or worker services: broker, backend, pool) started before this one and stopped after it. */
  readonly requires?: readonly string[];
  /** Components this one is started before (and stopped after). */
  readonly before?: readonly string[];
  /** Starts the service; a throw (or rejection) stops the worker's start with ComponentStartError. */
  start(ctx: ComponentContext): void | Promise<void>;
  /** Stops it, after the worker's last task; a throw is logged and the others still stop. */
  stop?(): void | Promise<void>;
}

/**
 * The components in start order: each after what it requires and before what it must precede,
 * otherwise in declaration order. Throws one ConfigError listing unknown names and cycles.
 */
export function orderComponents(components: readonly Component[]): Component[] {
  const byName = new Map(components.map((c) => [c.name, c]));
  const problems: string[] = [];
  if (byName.size !== components.length) problems.push(`components: a name is declared twice (${components.map((c) => c.name).join(', ')})`);
  const services = new Set<string>(WORKER_SERVICES);
  const consuming = new Set<string>(CONSUMING_SERVICES);
  /** name -> the components that must start first. */
  const after = new Map<string, Set<string>>(components.map((c) => [c.name, new Set()]));
  for (const c of components) {
    for (const r of c.requires ?? []) {
      if (byName.has(r)) after.get(c.name)!.add(r);
      else if (consuming.has(r)) problems.push(`component "${c.name}" requires "${r}", which the worker starts after its components`);
      else if (!services.has(r)) problems.push(`component "${c.name}" requires "${r}": no such component or worker service (${[...services].join(', ')})`);
    }
    for (const b of c.before ?? []) {
      if (byName.has(b)) after.get(b)!.add(c.name);
      else if (services.has(b)) problems.push(`component "${c.name}" cannot start before "${b}": the worker starts ${WORKER_SERVICES.join(', ')} first`);
      else if (!consuming.has(b)) problems.push(`component "${c.name}" starts before "${b}": no such component`);
    }
  }
  const ordered: Component[] = [];
  const done = new Set<string>();
  const visiting: string[] = [];
  const visit = (c: Component) => {
    if (done.has(c.name)) return;
    if (visiting.includes(c.name)) {
      problems.push(`components: a cycle ${[...visiting.slice(visiting.indexOf(c.name)), c.name].join(' -> ')}`);
      return;
    }
    visiting.push(c.name);
    for (const dep of after.get(c.name) ?? []) visit(byName.get(dep)!);
    visiting.pop();
    done.add(c.name);
    ordered.push(c);
  };
  for (const c of components) visit(c);
  if (problems.length > 0) throw new ConfigError([...new Set(problems)]);
  return ordered;
}

/** Started components: stop() stops them in reverse order (each failure logged, the others still stopped). */
export interface StartedComponents {
  stop(): Promise<void>;
}

/**
 * Starts the components in order. When one fails, those already started are stopped in reverse
 * and ComponentStartError (naming it) is thrown.
 */
export async function startComponents(components: readonly Component[], hostname: string, log: Logger): Promise<StartedComponents> {
  const started: Component[] = [];
  const stop = async () => {
    for (const c of started.splice(0).reverse()) {
      try {
        await c.stop?.();
        log.debug({ component: c.name }, 'component stopped');
      } catch (err) {
        // Shutdown goes on: the other components and the worker's own services must still stop.
        log.error({ err, component: c.name }, `component "${c.name}" failed to stop`);
      }
    }
  };
  for (const c of orderComponents(components)) {
    try {
      await c.start({ hostname, log: log.child({ component: c.name }) });
    } catch (err) {
      await stop();
      throw new ComponentStartError(c.name, err);
    }
    started.push(c);
    log.debug({ component: c.name }, 'component started');
  }
  return { stop };
}
