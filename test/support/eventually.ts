/**
 * Polling for tests against live systems: `eventually(fn)` re-runs `fn` until it stops throwing
 * (assertions included) and returns its value; the timeout only bounds the wait and is not
 * itself asserted on.
 */
export async function eventually<T>(fn: () => Promise<T> | T, o: { timeoutMs?: number; intervalMs?: number } = {}): Promise<T> {
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, o.intervalMs ?? 100));
    }
  }
}
