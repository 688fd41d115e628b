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
const fileUrl = `${pathToFileURL(dir).href}?visibility_timeout=0.3`;

brokerContract('memory', () => createMemoryBroker('memory://contract'), { priorityOrder: 'higher-first', restoresOnClose: false });
brokerContract('file', () => createFileBroker(fileUrl), { priorityOrder: 'higher-first', restoresOnClose: false, visibilityTimeoutMs: 300 });
backendContract('memory', () => createMemoryStore('memory://contract'));
backendContract('file', () => createFileStore(fileUrl));
