/**
 * Several live sources (one per host) as one sequence ordered by time, within a bound on
 * how long an item may wait for the others: an item is handed on once every open source
 * has one to compare it with, or once the oldest waiting item has waited `windowMs`. A
 * source that ended is not waited for, so finite sources merge exactly; a quiet followed
 * one delays the others by at most the window. Items without a time go on at once (in
 * their source's order).
 */

export interface MergeOptions<T> {
  /** The item's time (Unix ms), or null for one that is not ordered against other sources. */
  timeOf(item: T): number | null;
  /** The longest an item waits for the other sources. */
  windowMs: number;
  /** Items held per source; a source that has this many is not read until one goes on. */
  maxQueued: number;
  /** Stops the merge: the sequence ends (the sources are the caller's to stop). */
  signal: AbortSignal;
  now?: () => number;
}

interface Source<T> {
  items: Array<{ item: T; at: number }>;
  open: boolean;
  /** Lets the source's reader go on once its queue has room again. */
  resume: (() => void) | null;
}

export async function* mergeByTime<T>(sources: Array<AsyncIterable<T>>, o: MergeOptions<T>): AsyncGenerator<T> {
  const now = o.now ?? Date.now;
  const queues: Array<Source<T>> = sources.map(() => ({ items: [], open: true, resume: null }));
  let wake: (() => void) | null = null;
  const poke = () => wake?.();
  o.signal.addEventListener('abort', poke, { once: true });

  const read = async (source: AsyncIterable<T>, q: Source<T>) => {
    try {
      for await (const item of source) {
        if (o.signal.aborted) break;
        q.items.push({ item, at: now() });
        poke();
        if (q.items.length >= o.maxQueued) await new Promise<void>((resolve) => (q.resume = resolve));
      }
    } finally {
      q.open = false;
      poke();
    }
  };
  for (const [i, s] of sources.entries()) void read(s, queues[i]!).catch(() => undefined);

  /** The source whose head goes on now, else how long until one may (null: until something arrives). */
  const choose = (): { take: Source<T> } | { waitMs: number | null } | null => {
    const heads = queues.filter((q) => q.items.length > 0);
    if (heads.length === 0) return queues.some((q) => q.open) ? { waitMs: null } : null;
    const untimed = heads.find((q) => o.timeOf(q.items[0]!.item) === null);
    if (untimed) return { take: untimed };
    let first = heads[0]!;
    for (const q of heads) {
      const t = o.timeOf(q.items[0]!.item)!;
      const best = o.timeOf(first.items[0]!.item)!;
      if (t < best || (t === best && q.items[0]!.at < first.items[0]!.at)) first = q;
    }
    if (queues.every((q) => q.items.length > 0 || !q.open)) return { take: first };
    const oldest = Math.min(...heads.map((q) => q.items[0]!.at));
    const waitMs = oldest + o.windowMs - now();
    return waitMs <= 0 ? { take: first } : { waitMs };
  };

  try {
    while (!o.signal.aborted) {
      const next = choose();
      if (next === null) return;
      if ('take' in next) {
        const q = next.take;
        const { item } = q.items.shift()!;
        if (q.resume && q.items.length < o.maxQueued) {
          q.resume();
          q.resume = null;
        }
        yield item;
        continue;
      }
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        if (next.waitMs !== null) timer = setTimeout(resolve, next.waitMs);
      });
      wake = null;
      clearTimeout(timer);
    }
  } finally {
    o.signal.removeEventListener('abort', poke);
    // Readers waiting for room are let go; they stop at their next item (the signal).
    for (const q of queues) q.resume?.();
  }
}
