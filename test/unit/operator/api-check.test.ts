import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { checkApi } from '../../../operator/src/api-check.js';
import { KubeApiError, OperatorError } from '../../../operator/src/errors.js';
import type { KubeClient } from '../../../operator/src/k8s/kube-client.js';

/** A logger whose warn messages land in `lines`. */
function capture() {
  const lines: string[] = [];
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)).msg);
        cb();
      },
    }),
  );
  return { log, lines };
}

/** `list` answers with each of `answers` in turn (an Error is thrown), then succeeds. */
function listing(answers: Error[]): KubeClient {
  return {
    list: async () => {
      const a = answers.shift();
      if (a) throw a;
      return { items: [] };
    },
  } as unknown as KubeClient;
}

const noWait = async () => undefined;

describe('checkApi', () => {
  it('calls a 429 while CRD storage initializes "busy", not "not reachable"', async () => {
    const { log, lines } = capture();
    const tooMany = new KubeApiError(429, 'TooManyRequests', 'storage is (re)initializing', 'GET', '/apis/celeriac.io/v1alpha1/workerpools');
    await checkApi(listing([tooMany]), { log, sleep: noWait });
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /busy \(429 TooManyRequests/);
    assert.doesNotMatch(lines[0]!, /not reachable/);
  });

  it('calls a refused connection "not reachable" and gives up with E_API_UNREACHABLE', async () => {
    const { log, lines } = capture();
    const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' });
    await assert.rejects(
      checkApi(listing([refused(), refused(), refused()]), { log, attempts: 3, sleep: noWait }),
      (err: OperatorError) => err.code === 'E_API_UNREACHABLE',
    );
    assert.deepEqual(lines, ['API server not reachable yet; retrying', 'API server not reachable yet; retrying']);
  });

  it('gives up on an API server that keeps answering errors with E_API_ERROR, naming the answer', async () => {
    const { log } = capture();
    const busy = () => new KubeApiError(503, 'ServiceUnavailable', 'etcd leader changed', 'GET', '/apis/celeriac.io/v1alpha1/workerpools');
    await assert.rejects(
      checkApi(listing([busy(), busy()]), { log, attempts: 2, sleep: noWait }),
      (err: OperatorError) => err.code === 'E_API_ERROR' && /503 ServiceUnavailable/.test(err.message),
    );
  });

  it('fails at once when the CRDs are missing', async () => {
    const { log } = capture();
    await assert.rejects(
      checkApi(listing([new KubeApiError(404, 'NotFound', 'the server could not find the requested resource', 'GET', '/x')]), { log, sleep: noWait }),
      (err: OperatorError) => err.code === 'E_CRDS_MISSING',
    );
  });
});
