/**
 * A loopback TCP proxy in front of a test server, so a test can break the link the way networks
 * break it: freeze() is a partition (nothing passes, nothing closes: requests never get a reply),
 * cut() drops every connection and refuses new ones (the server looks gone).
 */
import { createServer, connect, type Socket } from 'node:net';

export interface TcpProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number;
  /** From now on bytes in either direction are dropped; connections stay open. */
  freeze(): void;
  /** Destroys every connection and refuses (destroys) new ones. */
  cut(): void;
  /** Bytes a client sent that freeze() dropped (a request went into the partition). */
  readonly droppedFromClients: number;
  /** Connections refused since cut() (a client is trying to reconnect). */
  readonly refused: number;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let frozen = false;
  let refusing = false;
  let dropped = 0;
  let refused = 0;
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const server = createServer((client) => {
    track(client);
    if (refusing) {
      refused++;
      return client.destroy();
    }
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    track(upstream);
    client.on('data', (b) => {
      if (frozen) dropped += b.length;
      else upstream.write(b);
    });
    upstream.on('data', (b) => {
      if (!frozen) client.write(b);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return {
    port: typeof addr === 'object' && addr ? addr.port : 0,
    get droppedFromClients() {
      return dropped;
    },
    get refused() {
      return refused;
    },
    freeze() {
      frozen = true;
    },
    cut() {
      refusing = true;
      for (const s of sockets) s.destroy();
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
