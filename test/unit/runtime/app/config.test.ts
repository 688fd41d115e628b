// app/config.ts: precedence, validation with every problem listed, and the README table.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createApp } from '../../../../runtime/src/app/app.js';
import { configTable, loadConfig } from '../../../../runtime/src/app/config.js';
import { ConfigError } from '../../../../runtime/src/errors.js';

describe('config', () => {
  it('takes flags over env over options over defaults, with Celery env fallbacks', () => {
    const c = loadConfig({
      env: { CELERY_BROKER_URL: 'memory://a', CELERIAC_CONCURRENCY: '7' },
      options: { concurrency: 3, defaultQueue: 'q' },
      flags: { logLevel: 'debug' },
    });
    assert.equal(c.brokerUrl, 'memory://a');
    assert.equal(c.resultBackend, 'memory://a');
    assert.equal(c.concurrency, 7);
    assert.deepEqual(c.queues, ['q']);
    assert.equal(c.logLevel, 'debug');
    assert.ok(Object.isFrozen(c));
    assert.equal(loadConfig({ env: { CELERIAC_BROKER_URL: 'amqp://h' } }).resultBackend, 'rpc://');
  });
  it('lists every problem at once, saying what is accepted', () => {
    try {
      loadConfig({ env: { CELERIAC_CONCURRENCY: 'four', CELERIAC_ACCEPT_CONTENT: 'json,pickle' }, options: { logLevel: 'loud', colour: 1 } as never });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.problems.length, 4);
      assert.match(err.message, /CELERIAC_CONCURRENCY: expected an integer from 1 to 10000, got "four"/);
      assert.match(err.message, /pickle is never accepted/);
      assert.match(err.message, /"logLevel": expected one of trace, debug/);
      assert.match(err.message, /option "colour" is unknown/);
    }
  });
});

describe('config: pools', () => {
  it("accepts celeriac's pool names and Celery's, and checks autoscale's MAX,MIN", () => {
    for (const pool of ['event-loop', 'threads', 'processes', 'solo', 'prefork']) assert.equal(loadConfig({ env: { CELERIAC_POOL: pool } }).pool, pool);
    assert.equal(loadConfig({ env: { CELERIAC_AUTOSCALE: '10,3' } }).autoscale, '10,3');
    assert.equal(loadConfig({ flags: { maxMemoryPerChildKib: '204800', maxTasksPerChild: 'none' } }).maxMemoryPerChildKib, 204_800);
    try {
      loadConfig({ env: { CELERIAC_POOL: 'gevent', CELERIAC_AUTOSCALE: 'ten' } });
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      assert.match(err.message, /CELERIAC_POOL: expected one of event-loop, threads, processes, solo, prefork/);
      assert.match(err.message, /CELERIAC_AUTOSCALE: expected MAX,MIN/);
    }
  });
});

describe('README', () => {
  it('shows the configuration table exactly as the config table makes it', async () => {
    const { readFileSync } = await import('node:fs');
    const readme = readFileSync(new URL('../../../../../README.md', import.meta.url), 'utf8');
    assert.ok(readme.includes(configTable()), 'README.md is out of date: paste configTable() output into "Configuration"');
  });
});

describe('createApp env option', () => {
  it('env {} makes the options the whole config: CELERIAC_* in process.env (e.g. Kubernetes service links) are not read', async () => {
    const saved = { port: process.env.CELERIAC_METRICS_PORT, broker: process.env.CELERIAC_BROKER_URL };
    // What a Service named `celeriac-metrics` puts into every pod of its namespace.
    process.env.CELERIAC_METRICS_PORT = 'tcp://10.96.149.15:8080';
    process.env.CELERIAC_BROKER_URL = 'redis://not-this-broker:6379/0';
    try {
      assert.throws(() => createApp({ broker: 'redis://127.0.0.1:6379/3' }), /CELERIAC_METRICS_PORT/, 'by default the env is read and wins');
      const app = createApp({ broker: 'redis://127.0.0.1:6379/3', env: {} });
      assert.equal(app.config.brokerUrl, 'redis://127.0.0.1:6379/3');
      assert.equal(app.config.metricsPort, loadConfig({ env: {} }).metricsPort);
      await app.close();
    } finally {
      for (const [k, v] of [
        ['CELERIAC_METRICS_PORT', saved.port],
        ['CELERIAC_BROKER_URL', saved.broker],
      ] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });
});
