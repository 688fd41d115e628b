/**
 * Items due at a time, with a single timer for the earliest one (no per-task timers).
 * Used for ETA/countdown tasks and rate-limited tasks.
 */
export class TimerHeap<T> {
  private readonly heap: { at: number; seq: number; item: T }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  private seq = 0;

  constructor(private readonly onDue: (items: T[]) => void) {}

  get size(): number {
    return this.heap.length;
  }

  push(at: number, item: T): void {
    const h = this.heap;
    h.push({ at, seq: this.seq++, item });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(i, p)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
    this.arm();
  }

  /** Removes and returns every item (shutdown: they are given back to the broker). */
  drain(): T[] {
    const items = this.heap.map((e) => e.item);
    this.heap.length = 0;
    this.disarm();
    return items;
  }

  /**
   * How many items are due at or before each of `ats` (ms, ascending), in one pass over the heap
   * without sorting: `result[i]` counts the items with `at <= ats[i]` (cumulative).
   */
  countDueBy(ats: readonly number[]): number[] {
    const counts = new Array<number>(ats.length).fill(0);
    for (const e of this.heap) {
      // The first threshold this item is due by; it counts there and (below) in every later one.
      let i = 0;
      while (i < ats.length && e.at > ats[i]!) i++;
      if (i < ats.length) counts[i]!++;
    }
    for (let i = 1; i < counts.length; i++) counts[i]! += counts[i - 1]!;
    return counts;
  }

  /** Items in due order, for inspection. */
  items(): T[] {
    return [...this.heap].sort((a, b) => a.at - b.at || a.seq - b.seq).map((e) => e.item);
  }

  private less(a: number, b: number): boolean {
    const x = this.heap[a]!;
    const y = this.heap[b]!;
    return x.at < y.at || (x.at === y.at && x.seq < y.seq);
  }

  private pop(): T {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(l, m)) m = l;
        if (r < h.length && this.less(r, m)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top.item;
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private arm(): void {
    const next = this.heap[0]?.at ?? Infinity;
    if (next >= this.timerAt) return;
    this.disarm();
    if (next === Infinity) return;
    this.timerAt = next;
    // setTimeout caps at ~24.8 days; re-arming on fire handles longer ETAs.
    this.timer = setTimeout(() => this.fire(), Math.min(2 ** 31 - 1, Math.max(0, next - Date.now())));
  }

  private fire(): void {
    this.timer = null;
    this.timerAt = Infinity;
    const now = Date.now();
    const due: T[] = [];
    while (this.heap.length > 0 && this.heap[0]!.at <= now) due.push(this.pop());
    this.arm();
    if (due.length > 0) this.onDue(due);
  }
}
