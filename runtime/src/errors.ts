/**
 * The whole error tree of celeriac, drawn first as celery/exceptions.py does.
 *
 * CeleriacError (code: string)
 *  ├─ ConfigError            bad configuration; lists every problem at once
 *  ├─ ProtocolError          a task message that cannot be run (missing header, args not a list); Celery's InvalidTaskError
 *  │   ├─ ContentDisallowedError   content type not in accept_content (pickle, …); kombu's ContentDisallowed
 *  │   ├─ DecodeError              a body that cannot be decoded (bad JSON, bad compression, over a limit); kombu's DecodeError
 *  │   └─ SecurityError            a signed message (auth serializer) that fails verification, or bad keys; Celery's SecurityError
 *  ├─ EncodeError            a value the serializer cannot write (an integer beyond msgpack's 64 bits); kombu's EncodeError
 *  ├─ NotRegisteredError     unknown task name on this worker
 *  ├─ TaskFailedError        a task failed remotely; carries the remote exc_type/exc_message
 *  ├─ ResultTimeoutError     AsyncResult.get() timed out
 *  ├─ BrokerError            a broker driver failed (wraps the driver error as cause)
 *  ├─ BackendError           a result backend driver failed
 *  ├─ TaskRevokedError       the task was revoked or expired
 *  ├─ CanvasError            a canvas this process cannot apply (unknown subtask_type, chord on rpc://)
 *  ├─ ChordError             a chord's header failed, or its body could not be applied (stored on the body)
 *  ├─ ComponentStartError    a component (the worker's own or app.component's) failed to start: the worker does not start
 *  ├─ WorkerLostError        a task's runner died or was cut off under it (shutdown timeout, cold shutdown); billiard's name
 *  └─ TaskPredicate          thrown by tasks to steer the worker
 *      ├─ Retry              re-run later (ctx.retry() throws it)
 *      ├─ Reject             reject the message (requeue or dead-letter)
 *      ├─ Ignore             drop without storing a state
 *      └─ Replace            hand the task's id over to a signature (ctx.replace())
 */

/** Base class of every error celeriac throws; `code` is stable for programs to match on. */
export class CeleriacError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration. `problems` lists each bad key with what is accepted. */
export class ConfigError extends CeleriacError {
  constructor(readonly problems: readonly string[]) {
    super('E_CONFIG', `Invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

/** A component (the worker's own, or a user's) failed to start; the message names it (the worker stops what it started). */
export class ComponentStartError extends CeleriacError {
  constructor(
    readonly component: string,
    cause: unknown,
  ) {
    super('E_COMPONENT_START', `component "${component}" failed to start: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/**
 * A message that cannot be decoded into a task request. `excType`/`excModule` name the Celery
 * exception a Python caller sees in the stored FAILURE (read by exceptionToDict).
 */
export class ProtocolError extends CeleriacError {
  readonly excType: string = 'InvalidTaskError';
  readonly excModule: string = 'celery.exceptions';
  constructor(message: string, options?: { cause?: unknown }, code = 'E_PROTOCOL') {
    super(code, message, options);
  }
}

/** A body (or envelope) that cannot be decoded, or is over the size or nesting limit: kombu's DecodeError. */
export class DecodeError extends ProtocolError {
  override readonly excType = 'DecodeError';
  override readonly excModule = 'kombu.exceptions';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options, 'E_DECODE');
  }
}

/** A signed message that fails verification (unknown signer, bad signature), or a key or certificate Celery would refuse. */
export class SecurityError extends ProtocolError {
  override readonly excType = 'SecurityError';
  override readonly excModule = 'celery.exceptions';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options, 'E_SECURITY');
  }
}

/** The message's content type is not in `acceptContent` (pickle is never accepted). */
export class ContentDisallowedError extends ProtocolError {
  override readonly excType = 'ContentDisallowed';
  override readonly excModule = 'kombu.exceptions';
  constructor(
    readonly contentType: string,
    readonly accepted: readonly string[],
  ) {
    super(
      contentType === 'application/x-python-serialize'
        ? `Refusing a pickle message (content type ${contentType}): pickle can run arbitrary code and celeriac never decodes it. ` +
            `Send tasks with serializer "json" (Celery's default) or "msgpack".`
        : `Content type "${contentType}" is not accepted (accepted: ${accepted.join(', ')}). ` + `Add it to acceptContent or change the sender's serializer.`,
    );
    (this as { code: string }).code = 'E_CONTENT_DISALLOWED';
  }
}

/** A value the serializer cannot write, as kombu's EncodeError (e.g. an integer beyond msgpack's 64 bits). */
export class EncodeError extends CeleriacError {
  readonly excType = 'EncodeError';
  readonly excModule = 'kombu.exceptions';
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_ENCODE', message, options);
  }
}

/** A task name this worker has no function for. */
export class NotRegisteredError extends CeleriacError {
  constructor(
    readonly taskName: string,
    registered: readonly string[],
  ) {
    super(
      'E_NOT_REGISTERED',
      `Task "${taskName}" is not registered on this worker ` + `(registered: ${registered.join(', ') || 'none'}). Is its module loaded with -A?`,
    );
  }
}

/** A task failed; `excType`/`excMessage`/`excModule` are as the worker that ran it wrote them. */
export class TaskFailedError extends CeleriacError {
  constructor(
    readonly taskId: string,
    readonly excType: string,
    readonly excMessage: string,
    readonly excModule: string | null,
    readonly remoteTraceback: string | null,
  ) {
    super('E_TASK_FAILED', `Task ${taskId} failed: ${excType}: ${excMessage}`);
  }
}

/** The task was revoked (by id or because it expired). */
export class TaskRevokedError extends CeleriacError {
  constructor(
    readonly taskId: string,
    readonly reason: string,
  ) {
    super('E_TASK_REVOKED', `Task ${taskId} was revoked: ${reason}`);
  }
}

/** AsyncResult.get() gave up waiting. */
export class ResultTimeoutError extends CeleriacError {
  constructor(
    readonly taskId: string,
    readonly timeoutMs: number,
    readonly lastState: string,
  ) {
    super('E_RESULT_TIMEOUT', `Timed out after ${timeoutMs} ms waiting for task ${taskId} (last state ${lastState}).`);
  }
}

/** A broker operation failed. The message names the broker URL with its password redacted. */
export class BrokerError extends CeleriacError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BROKER', message, options);
  }
}

/** A result backend operation failed. */
export class BackendError extends CeleriacError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_BACKEND', message, options);
  }
}

/** A signature this process cannot apply: an unknown `subtask_type`, or a chord without a joining backend. */
export class CanvasError extends CeleriacError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_CANVAS', message, options);
  }
}

/**
 * A chord that cannot complete: a header task failed (`Dependency <id> raised …`) or the body
 * could not be applied. Stored as the body's FAILURE under Celery's name, so Python rebuilds it.
 */
export class ChordError extends CeleriacError {
  readonly excModule = 'celery.exceptions';
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_CHORD', message, options);
  }
}

/** Base of the errors a task throws to steer the worker rather than to fail. */
export class TaskPredicate extends CeleriacError {}

/** Thrown by `ctx.retry()`: the worker republishes the task with `retries + 1` after `countdownMs`. */
export class Retry extends TaskPredicate {
  constructor(
    readonly countdownMs: number,
    readonly exc: unknown,
    readonly eta: Date | null = null,
  ) {
    super('E_RETRY', `Retry in ${Math.round(countdownMs / 1000)}s${exc instanceof Error ? `: ${exc.name}('${exc.message}')` : ''}`);
  }
}

/** Thrown by a task to reject its message; `requeue: false` dead-letters it. */
export class Reject extends TaskPredicate {
  constructor(
    readonly reason: string,
    readonly requeue = false,
  ) {
    super('E_REJECT', `Rejected: ${reason}`);
  }
}

/** Thrown by a task so that the worker stores no state for it. */
export class Ignore extends TaskPredicate {
  constructor(reason = 'ignored') {
    super('E_IGNORE', reason);
  }
}

/**
 * Thrown by `ctx.replace(sig)`: the worker applies `signature` in the task's place (its id, chain,
 * links and chord pass to it) and stores nothing for the task itself (Celery's Task.replace).
 */
export class Replace extends TaskPredicate {
  constructor(readonly signature: { readonly task: string }) {
    super('E_REPLACE', `Replaced by ${signature.task}`);
  }
}

/** A task's runner died under it (billiard's name, so Python peers see the same type). */
export class WorkerLostError extends CeleriacError {
  readonly excModule = 'billiard.exceptions';
  constructor(message: string) {
    super('E_WORKER_LOST', message);
  }
}

/** Redis (WRONGPASS, NOAUTH) and RabbitMQ (ACCESS_REFUSED) refusing the credentials: retrying will not help. */
export function isAuthenticationError(err: unknown): boolean {
  const msg = err instanceof Error ? err.message : String(err);
  return /WRONGPASS|NOAUTH|invalid password|invalid username|ACCESS.REFUSED|authentication fail/i.test(msg);
}

/** Removes the password from a URL so it can appear in logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    // Not a URL: keep it, but hide anything that looks like user:password@.
    return redactText(url);
  }
}

/** `scheme://user:password@` anywhere in a text; the password is group 2. */
const CREDENTIALS_IN_URL = /([a-z][a-z0-9+.-]*:\/\/[^\s:@/"'`]*):([^\s@/"'`]+)@/gi;

/**
 * Hides the password of every `scheme://user:password@host` URL in a text (log lines, error
 * messages from drivers that quote the URL they were given). The last line of defence: call sites
 * still redact what they know is a URL.
 */
export function redactText(text: string): string {
  return text.includes('://') ? text.replace(CREDENTIALS_IN_URL, '$1:***@') : text;
}
