// Static checks of crds/*.yaml: what the API server cannot tell us without running (it drops or
// refuses unknown schema keys late), and the shapes other parts rely on (scale subresource paths,
// the spec.autoscaling fields fixed in the brief, printer columns).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, parseAllDocuments } from 'yaml';
import { CRD_DIR } from '../../support/envtest.js';

const SCHEMA_KEYS = new Set([
  'type',
  'description',
  'properties',
  'items',
  'required',
  'default',
  'enum',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'minLength',
  'maxLength',
  'minItems',
  'maxItems',
  'pattern',
  'format',
  'additionalProperties',
  'nullable',
  'x-kubernetes-validations',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-int-or-string',
]);

type Schema = { [k: string]: unknown; properties?: Record<string, Schema>; items?: Schema };

function walk(s: Schema, path: string, bad: string[]): void {
  for (const k of Object.keys(s)) if (!SCHEMA_KEYS.has(k)) bad.push(`${path}: ${k}`);
  for (const [k, v] of Object.entries(s.properties ?? {})) walk(v, `${path}.${k}`, bad);
  if (s.items) walk(s.items, `${path}[]`, bad);
}

function crd(file: string): any {
  return parse(readFileSync(join(CRD_DIR, file), 'utf8'));
}

describe('crds/', () => {
  const files = readdirSync(CRD_DIR).filter((f) => f.endsWith('.yaml'));

  it('holds the two CRDs, named <group>_<plural>.yaml', () => {
    assert.deepEqual(files.sort(), ['celeriac.io_taskqueues.yaml', 'celeriac.io_taskschedules.yaml', 'celeriac.io_workerpools.yaml']);
    for (const f of files) assert.equal(f, `${crd(f).spec.group}_${crd(f).spec.names.plural}.yaml`);
  });

  it('uses only schema keywords the API server knows (a stray comma in a flow mapping makes a new key)', () => {
    const bad: string[] = [];
    for (const f of files) walk(crd(f).spec.versions[0].schema.openAPIV3Schema, f, bad);
    assert.deepEqual(bad, []);
  });

  it('gives WorkerPool a scale subresource with a string selector, and both a status subresource', () => {
    const wp = crd('celeriac.io_workerpools.yaml').spec.versions[0];
    assert.deepEqual(wp.subresources.scale, {
      specReplicasPath: '.spec.replicas',
      statusReplicasPath: '.status.replicas',
      labelSelectorPath: '.status.selector',
    });
    assert.equal(wp.schema.openAPIV3Schema.properties.status.properties.selector.type, 'string');
    assert.deepEqual(crd('celeriac.io_taskqueues.yaml').spec.versions[0].subresources, { status: {} });
  });

  it('has spec.autoscaling with exactly the fields of the brief and the minReplicas <= maxReplicas rule', () => {
    const a = crd('celeriac.io_workerpools.yaml').spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.autoscaling;
    assert.deepEqual(Object.keys(a.properties).sort(), [
      'activationThreshold',
      'behavior',
      'cooldownPeriodSeconds',
      'eventDriven', // issue 19: decide within about a second of work arriving
      'fallback',
      'maxReplicas',
      'metrics',
      'minReplicas',
      'paused',
      'pollingIntervalSeconds',
      'scheduleLeadSeconds', // issue 13: the lead time before a scheduled run
      'targetDrainSeconds',
      'targetUtilization',
      'tasksPerReplica',
    ]);
    assert.deepEqual(a.required, ['maxReplicas']);
    const defaults = Object.fromEntries(
      Object.entries(a.properties as Record<string, { default?: unknown }>)
        .filter(([, v]) => 'default' in v)
        .map(([k, v]) => [k, v.default]),
    );
    assert.deepEqual(defaults, {
      minReplicas: 1,
      paused: false,
      pollingIntervalSeconds: 5,
      cooldownPeriodSeconds: 300,
      activationThreshold: 0,
      targetDrainSeconds: 8,
      targetUtilization: 0.8,
      eventDriven: true,
    });
    for (const dir of ['scaleUp', 'scaleDown']) {
      const { type, minimum, maximum } = a.properties.behavior.properties[dir].properties.tolerance ?? {};
      assert.deepEqual({ type, minimum, maximum }, { type: 'number', minimum: 0, maximum: 1 }, `behavior.${dir}.tolerance`);
    }
    assert.ok(a['x-kubernetes-validations'].some((v: { rule: string }) => v.rule === 'self.minReplicas <= self.maxReplicas'));
    assert.deepEqual(a.properties.metrics.items.properties.type.enum, ['queueDepth', 'inFlight', 'prometheus']);
  });

  it('shows replicas, desired, ready and conditions in kubectl get', () => {
    const cols = crd('celeriac.io_workerpools.yaml').spec.versions[0].additionalPrinterColumns.map((c: { name: string }) => c.name);
    for (const c of ['Min', 'Max', 'Desired', 'Replicas', 'Ready', 'Active', 'Status', 'Age']) assert.ok(cols.includes(c), c);
  });

  it("shows a TaskSchedule's task, schedule, queue, last and next run in kubectl get", () => {
    const cols = crd('celeriac.io_taskschedules.yaml').spec.versions[0].additionalPrinterColumns.map((c: { name: string }) => c.name);
    for (const c of ['Task', 'Schedule', 'Every', 'Queue', 'Last', 'Next', 'Ready', 'Age']) assert.ok(cols.includes(c), c);
  });

  it('ships examples that parse', () => {
    const dir = join(CRD_DIR, 'examples');
    const kinds = readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => (d.toJSON() as { kind: string }).kind));
    assert.ok(kinds.includes('TaskQueue') && kinds.includes('WorkerPool') && kinds.includes('TaskSchedule'));
  });
});
