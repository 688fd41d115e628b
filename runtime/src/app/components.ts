/**
 * Components: services started with the worker and stopped with it (Celery's bootsteps
 * `StartStopStep`). The worker's own are built so (worker/services.ts: broker, backend, tracing,
 * metrics, watchdog, pool, events, heartbeat, control, consumer, autoscaler); a user adds theirs in
 * the tasks module with `app.component({...})`. Each names what it `requires` (started first,
 * stopped after it) and what it must start `before`; otherwise they start in declaration order, a
 * user's after the pool and before the worker's events, control and consumer, so that a task
 * always finds them started. They stop in reverse. A failing start stops what started, in
 * reverse, and the worker's start rejects with ComponentStartError naming the component.
 *
 * Components run in the worker process. A task in a threads or processes runner has its own copy
 * of the module: open per-runner resources in a `workerProcessInit` signal handler instead (as
 * Celery's prefork children do).
 */
import type { Logger } from 'pino';
import { CeleriacError, ComponentStartError, ConfigError } from '../errors.js';

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
  /** Components (the worker's own too: 'backend', 'pool', ...) started before this one and stopped after it. */
  readonly requires?: readonly string[];
  /** Components this one is started before (and stopped after), e.g. 'consumer'. */
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
  const known = () => [...byName.keys()].join(', ');
  /** name -> the components that must start first. */
  const after = new Map<string, Set<string>>(components.map((c) => [c.name, new Set()]));
  for (const c of components) {
    for (const r of c.requires ?? []) {
      if (byName.has(r)) after.get(c.name)!.add(r);
      else problems.push(`component "${c.name}" requires "${r}": no such component (known: ${known()})`);
    }
    for (const b of c.before ?? []) {
      if (byName.has(b)) after.get(b)!.add(c.name);
      else problems.push(`component "${c.name}" starts before "${b}": no such component (known: ${known()})`);
    }
  }
  const ordered: Component[] = [];
  const done = new Set<string>();
  const visiting: string[] = [];
  const visit = (c: Component) => {
    if (done.has(c.name)) return;
    if (visiting.includes(c.name)) {
      const cycle = [...visiting.slice(visiting.indexOf(c.name)), c.name].join(' -> ');
      problems.push(`components: a cycle ${cycle} (each must start after the next)`);
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

/**
 * Components started in order and stopped in reverse. The order is checked when it is made
 * (ConfigError); start() starts them one by one and, when one fails, stops those already started
 * in reverse and throws ComponentStartError naming it; stop() stops what started, in reverse (each
 * failure logged, the others still stopped).
 */
export class ComponentRunner {
  private readonly ordered: readonly Component[];
  private readonly started: Component[] = [];

  constructor(
    components: readonly Component[],
    private readonly hostname: string,
    private readonly log: Logger,
  ) {
    this.ordered = orderComponents(components);
  }

  /** The names in start order. */
  get names(): string[] {
    return this.ordered.map((c) => c.name);
  }

  async start(): Promise<void> {
    for (const c of this.ordered) {
      try {
        await c.start({ hostname: this.hostname, log: this.log.child({ component: c.name }) });
      } catch (err) {
        const failed = new ComponentStartError(c.name, err);
        // The worker does not start: what started so far stops before the error goes up. Our own
        // errors say what to fix (a refused password, a taken port): no stack, as the CLI prints
        // them; anything else (a bug in a component) keeps its stack.
        if (err instanceof CeleriacError) this.log.error({ component: c.name, code: err.code }, failed.message);
        else this.log.error({ err: failed }, failed.message);
        await this.stop();
        throw failed;
      }
      this.started.push(c);
      this.log.debug({ component: c.name }, 'component started');
    }
  }

  async stop(): Promise<void> {
    for (const c of this.started.splice(0).reverse()) {
      try {
        await c.stop?.();
        this.log.debug({ component: c.name }, 'component stopped');
      } catch (err) {
        // Shutdown goes on: the other components must still stop.
        this.log.error({ err, component: c.name }, `component "${c.name}" failed to stop`);
      }
    }
  }
}
