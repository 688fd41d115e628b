/**
 * A private redis-server on a free loopback port, for the operator tier (the TaskQueue broker
 * checks). Small on purpose; the shared starter for broker tests is test/support/servers.ts.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { freePort } from './envtest.js';

export interface LocalRedis {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

const CANDIDATES = ['/usr/bin/redis-server', '/usr/local/bin/redis-server', '/usr/sbin/redis-server'];

/** Why redis-server cannot run here, or false (throws instead when CELERIAC_REQUIRE_SERVICES=1). */
export function redisSkipReason(): string | false {
  if (CANDIDATES.some((c) => existsSync(c))) return false;
  const why = 'redis-server is not installed (test/support/setup-services.sh installs it)';
  if (process.env.CELERIAC_REQUIRE_SERVICES === '1') throw new Error(why);
  console.error(`\n!!! SKIPPING redis-backed tests: ${why}\n`);
  return why;
}

export async function startLocalRedis(): Promise<LocalRedis> {
  const bin = CANDIDATES.find((c) => existsSync(c));
  if (!bin) throw new Error('redis-server not found');
  const port = await freePort();
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--loglevel', 'warning'], {
    stdio: 'ignore',
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.end();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
