/**
 * At most `size` calls of `run` in flight; the others wait, in order, for a free slot.
 * The wait is outside the call: a deadline inside `fn` starts when `fn` does.
 */
export class Slots {
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly size: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inFlight >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.inFlight += 1;
    try {
      return await fn();
    } finally {
      // The slot passes straight to the next caller, so a newcomer never overtakes it.
      const next = this.waiting.shift();
      if (next) next();
      else this.inFlight -= 1;
    }
  }
}
