/** Polling for a condition on real hosts or a real daemon, with a deadline that names what was awaited. */

/** Resolves with `fn`'s first non-null value, polling every `pollMs`; throws after `timeoutMs` naming `what` (and the last value seen by `describe`, if given). */
export async function waitUntil<T>(what: string, fn: () => Promise<T | null>, opts: { timeoutMs?: number; pollMs?: number; describe?: () => Promise<string> } = {}): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${opts.describe ? `: ${await opts.describe()}` : ''}`);
    await new Promise((r) => setTimeout(r, opts.pollMs ?? 50));
  }
}
