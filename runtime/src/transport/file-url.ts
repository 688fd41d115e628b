/** The folder a file:// URL names, shared by the file broker and the file result store. */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The URL's path, or `$XDG_CACHE_HOME/celeriac/<sub>` when it names none (`file://`). */
export function fileUrlPath(url: string, sub: string): string {
  const u = new URL(url);
  if (u.pathname && u.pathname !== '/') return fileURLToPath(new URL(`file://${u.pathname}`));
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(cache, 'celeriac', sub);
}
