/** The package version, read once from the package.json beside dist/ (both bins print it with --version). */
import { readFileSync } from 'node:fs';

// dist/runtime/src/version.js -> the package root, in the repository and in an installed package alike.
const manifest = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

/** This package's version, e.g. "0.1.0". */
export const VERSION: string = manifest.version;
