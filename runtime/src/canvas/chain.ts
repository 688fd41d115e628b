/**
 * chain: steps run one after another, each given the previous result (Celery's `chain` and
 * `a | b | c`). `pipe(a, b, c)` is the same chain, for code that reads better left to right.
 */
import { canvasSignature, type SignatureDict } from './signature.js';

/** A chain signature of `steps` (Celery's `chain(a, b, c)`); a group followed by a step becomes a chord when applied. */
export function chain(...steps: SignatureDict[]): SignatureDict {
  return canvasSignature('chain', { tasks: steps });
}

/** `pipe(a, b, c)`: Celery's `a | b | c`; a chain given as a step is spliced in. */
export function pipe(first: SignatureDict, ...rest: SignatureDict[]): SignatureDict {
  const steps = [first, ...rest].flatMap((s) => (s.subtask_type === 'chain' ? (s.kwargs.tasks as SignatureDict[]) : [s]));
  return chain(...steps);
}
