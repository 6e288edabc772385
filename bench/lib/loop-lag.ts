/**
 * Event-loop lag as `monitorEventLoopDelay` measures it (each sample is the interval between
 * two firings of a `resolutionMs` timer, so a held loop shows as one long interval), keeping
 * every sample so that several runs can be pooled.
 *
 * Why not one `monitorEventLoopDelay` enabled for each run: an IntervalHistogram cannot be
 * merged into another, and one enabled again after `disable()` records the whole gap since
 * its last sample as its first (Node 20 keeps the previous timestamp). A pooled histogram
 * re-enabled per run got one false sample of 50-90 ms per run, ~9 of the ~22 samples its
 * p99 stood on at 10 runs.
 */
export class LoopLagSampler {
  private samples: number[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly resolutionMs = 5) {}

  start(): void {
    if (this.timer) throw new Error('LoopLagSampler: already started');
    this.samples = [];
    let last = performance.now();
    this.timer = setInterval(() => {
      const now = performance.now();
      this.samples.push(now - last);
      last = now;
    }, this.resolutionMs);
  }

  /** The intervals (ms) seen since start. */
  stop(): number[] {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.samples;
  }
}
