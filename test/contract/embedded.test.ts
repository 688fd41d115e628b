/**
 * The contract suites on the embedded drivers (no server): memory:// and file://.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { pathToFileURL } from 'node:url';
import { createFileBroker } from '../../runtime/src/brokers/file.js';
import { createMemoryBroker } from '../../runtime/src/brokers/memory.js';
import { createFileStore } from '../../runtime/src/backends/file.js';
import { createMemoryStore } from '../../runtime/src/backends/memory.js';
import { brokerContract } from './broker-contract.js';
import { backendContract } from './backend-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'celeriac-contract-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// A visibility timeout of 1 s (as the Redis suite uses): shorter ones lapse when a loaded machine
// stalls the event loop longer than the keeper's margin, and the live-consumer test then fails.
const fileUrl = `${pathToFileURL(dir).href}?visibility_timeout=1`;

brokerContract('memory', () => createMemoryBroker('memory://contract'), { priorityOrder: 'higher-first', restoresOnClose: false });
brokerContract('file', () => createFileBroker(fileUrl), { priorityOrder: 'higher-first', restoresOnClose: false, visibilityTimeoutMs: 1_000 });
backendContract('memory', () => createMemoryStore('memory://contract'));
backendContract('file', () => createFileStore(fileUrl));
