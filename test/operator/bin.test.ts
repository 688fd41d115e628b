// The celeriac-operator bin fails fast, with a message that says what to do, when the cluster has
// no celeriac CRDs or its credentials may not read them.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { envtestSkipReason, startControlPlane, type ControlPlane } from '../support/envtest.js';

const skip = envtestSkipReason();
const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'operator', 'src', 'main.js');

describe('celeriac-operator start-up checks', { skip }, () => {
  let cp: ControlPlane;
  before(async () => {
    cp = await startControlPlane({ crdDir: false, users: [{ name: 'nobody' }] });
  });
  after(async () => cp?.stop());

  function run(kubeconfig: string): { status: number | null; stderr: string } {
    const r = spawnSync(process.execPath, [BIN, '--kubeconfig', kubeconfig, '--metrics-port', '0'], { encoding: 'utf8', timeout: 60_000 });
    return { status: r.status, stderr: r.stderr };
  }

  it('exits 1 and says to install the CRDs when they are missing', () => {
    const r = run(cp.kubeconfigPath);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /The celeriac\.io CRDs are not installed in this cluster: run `kubectl apply -f crds\/`/);
  });

  it('exits 1 and points at RBAC when it may not list WorkerPools', () => {
    const r = run(cp.kubeconfigFor('nobody'));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /may not list WorkerPools\/TaskQueues\/TaskSchedules: .*forbidden.*Check its ServiceAccount's RBAC/);
  });
});
