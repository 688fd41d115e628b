/**
 * celeriac's TLS options in a rediss:// or amqps:// URL, the same for both drivers (and what the
 * operator writes for a TaskQueue's spec.broker.tls):
 * - `tlsInsecure=true`: do not verify the server's certificate (testing only);
 * - `tlsServerName=NAME`: verify the certificate against NAME instead of the URL's host (SNI too).
 */
import type { ConnectionOptions } from 'node:tls';
import { BrokerError, redactUrl } from '../errors.js';

export const TLS_PARAMS = ['tlsInsecure', 'tlsServerName'] as const;

/**
 * Removes the TLS options from `u` and returns them as node:tls options (undefined when none are
 * set). They need a TLS scheme: on a plain URL they would silently do nothing.
 */
export function takeTlsParams(u: URL, tlsScheme: string, url: string): ConnectionOptions | undefined {
  const insecure = u.searchParams.get('tlsInsecure');
  const serverName = u.searchParams.get('tlsServerName');
  for (const p of TLS_PARAMS) u.searchParams.delete(p);
  if (insecure === null && serverName === null) return undefined;
  if (u.protocol !== tlsScheme) {
    throw new BrokerError(`Invalid broker URL "${redactUrl(url)}": tlsInsecure and tlsServerName need a ${tlsScheme}// URL`);
  }
  if (insecure !== null && !['true', 'false', '1', '0'].includes(insecure)) {
    throw new BrokerError(`Invalid broker URL "${redactUrl(url)}": tlsInsecure must be true or false, got "${insecure}"`);
  }
  if (serverName === '') throw new BrokerError(`Invalid broker URL "${redactUrl(url)}": tlsServerName is empty`);
  const o: ConnectionOptions = {};
  if (insecure === 'true' || insecure === '1') o.rejectUnauthorized = false;
  if (serverName) o.servername = serverName;
  return o;
}
