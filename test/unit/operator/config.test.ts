import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONFIG_TABLE, configHelp, configMarkdown, loadConfig } from '../../../operator/src/config.js';
import { ConfigError } from '../../../operator/src/errors.js';

describe('operator loadConfig', () => {
  it('uses the defaults of the brief (metrics 8080, lease 15/10/2 s, no leader election)', () => {
    const c = loadConfig({}, {});
    assert.equal(c.metricsPort, 8080);
    assert.equal(c.leaderElect, false);
    assert.deepEqual([c.leaseDurationSeconds, c.renewDeadlineSeconds, c.retryPeriodSeconds], [15, 10, 2]);
    assert.equal(c.namespace, undefined);
    assert.ok(Object.isFrozen(c));
  });

  it('takes env, and flags over env', () => {
    const env = {
      CELERIAC_OPERATOR_WATCH_NAMESPACE: 'shop',
      CELERIAC_OPERATOR_METRICS_PORT: '9090',
      POD_NAMESPACE: 'celeriac-system',
      CELERIAC_OPERATOR_LEADER_ELECT: 'true',
    };
    const c = loadConfig({ metricsPort: '7070' }, env);
    assert.equal(c.namespace, 'shop');
    assert.equal(c.metricsPort, 7070);
    assert.equal(c.leaseNamespace, 'celeriac-system');
    assert.equal(c.leaderElect, true);
    assert.equal(loadConfig({ leaderElect: true }, {}).leaderElect, true);
  });

  it('reports every problem at once, naming the source', () => {
    assert.throws(
      () => loadConfig({ workers: 'four' }, { CELERIAC_OPERATOR_METRICS_PORT: '70000', CELERIAC_OPERATOR_LEADER_ELECT: 'maybe', CELERIAC_LOG_LEVEL: 'loud' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.deepEqual(err.problems, [
          "CELERIAC_OPERATOR_LEADER_ELECT: expected true or false, got 'maybe'",
          "CELERIAC_OPERATOR_METRICS_PORT: expected an integer from 0 to 65535, got '70000'",
          "--workers: expected an integer from 1 to 64, got 'four'",
          "CELERIAC_LOG_LEVEL: expected one of trace, debug, info, warn, error, fatal, got 'loud'",
        ]);
        return true;
      },
    );
  });

  it('refuses a renew deadline that is not shorter than the lease', () => {
    assert.throws(
      () => loadConfig({ leaseDurationSeconds: '5', renewDeadlineSeconds: '5' }, {}),
      /renew deadline \(5s\) must be shorter than the lease duration \(5s\)/,
    );
  });

  it('documents every setting in the help text', () => {
    const help = configHelp();
    for (const e of CONFIG_TABLE) {
      assert.ok(help.includes(`--${e.flag}`), e.key);
      for (const env of e.env) assert.ok(help.includes(env), env);
    }
  });
});

describe('operator/README.md', () => {
  it('carries the configuration table generated from the config table', () => {
    const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'operator', 'README.md'), 'utf8');
    assert.ok(readme.includes(configMarkdown()), 'operator/README.md is out of date: paste configMarkdown() into its Configuration section');
  });
});
