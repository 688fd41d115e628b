/**
 * The operator's errors, all `CeleriacError`s (runtime/src/errors.ts):
 *
 * CeleriacError
 *  ├─ ConfigError            (runtime) bad operator configuration, every problem at once
 *  └─ OperatorError          base of the operator's own errors
 *      ├─ KubeApiError       the API server answered with an error status (statusCode, reason)
 *      ├─ TerminalError      the spec is wrong: reported in a condition, not retried until it changes
 *      └─ BrokerCheckError   a TaskQueue's broker check failed; `reason` is the condition reason
 */
import { CeleriacError } from '../../runtime/src/errors.js';

export { CeleriacError, ConfigError } from '../../runtime/src/errors.js';

/** Base class of errors raised by the operator. */
export class OperatorError extends CeleriacError {}

/** An error status from the Kubernetes API server, with its HTTP code and `Status.reason`. */
export class KubeApiError extends OperatorError {
  constructor(
    readonly statusCode: number,
    readonly reason: string,
    message: string,
    readonly method: string,
    readonly path: string,
  ) {
    super('E_KUBE_API', `${method} ${path}: ${statusCode} ${reason}: ${message}`);
  }
}

/** True when `err` is an API error with this HTTP status (404 not found, 409 conflict, ...). */
export function isKubeStatus(err: unknown, statusCode: number): err is KubeApiError {
  return err instanceof KubeApiError && err.statusCode === statusCode;
}

/**
 * The object's spec cannot work as written. The reconciler reports it in a status condition
 * (`reason` is the condition reason) and the controller does not retry until the object changes.
 */
export class TerminalError extends OperatorError {
  constructor(
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('E_TERMINAL', message, options);
  }
}

/** Why a TaskQueue's broker check failed; `reason` becomes the BrokerReachable condition reason. */
export type BrokerCheckReason = 'SecretNotFound' | 'SecretKeyMissing' | 'InvalidURL' | 'AuthenticationFailed' | 'Unreachable' | 'Timeout' | 'ProtocolError';

/** A broker check failed in a way the user must fix (message says what and how). */
export class BrokerCheckError extends OperatorError {
  constructor(
    readonly reason: BrokerCheckReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super('E_BROKER_CHECK', message, options);
  }
}
