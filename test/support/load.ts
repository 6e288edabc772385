/**
 * The load checker: N concurrent keep-alive clients per target URL, plus clients that
 * make slow requests (which straddle a traffic switch), until stopped. It counts every
 * non-2xx, connection error and timeout, and which version answered each request.
 * Targets are only the test hosts' own addresses.
 */
import http from 'node:http';

export interface LoadOptions {
  targets: string[];
  clientsPerTarget?: number;
  slowClientsPerTarget?: number;
  /** Path of the slow request (answers after ~2 s with the version). */
  slowPath?: string;
  timeoutMs?: number;
  /** Hard bound on how long the load runs, whatever happens. */
  maxDurationMs?: number;
}

export interface LoadReport {
  requests: number;
  ok: number;
  /**
   * GETs re-sent once because the kept-alive connection they went out on was closed by
   * the server before any byte of a response (RFC 9112 §9.3.1: what browsers, curl and
   * Go's client do for idempotent requests). Counted, never hidden.
   */
  staleConnectionRetries: number;
  failures: Array<{ target: string; what: string; at: number }>;
  slow: { started: number; completed: number; failed: number; versions: Record<string, number> };
  versions: Record<string, number>;
  /** Versions of the last response per target. */
  last: Record<string, string>;
  latenciesMs: number[];
  durationMs: number;
}

export interface LoadRun {
  /** Stops every client after its request in flight and returns the totals. */
  stop(): Promise<LoadReport>;
  snapshot(): LoadReport;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function startLoad(o: LoadOptions): LoadRun {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const report: LoadReport = { requests: 0, ok: 0, staleConnectionRetries: 0, failures: [], slow: { started: 0, completed: 0, failed: 0, versions: {} }, versions: {}, last: {}, latenciesMs: [], durationMs: 0 };
  const started = Date.now();
  let running = true;
  const hardStop = setTimeout(() => (running = false), o.maxDurationMs ?? 120_000);

  const once = (url: string, timeoutMs: number) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      let responded = false;
      const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
        responded = true;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
      req.on('error', (err: Error & { code?: string }) => {
        const stale = req.reusedSocket && !responded && (err.code === 'ECONNRESET' || err.code === 'EPIPE');
        reject(Object.assign(err, { stale }));
      });
    });
  const get = async (url: string, timeoutMs: number) => {
    try {
      return await once(url, timeoutMs);
    } catch (err) {
      if (!(err as { stale?: boolean }).stale) throw err;
      report.staleConnectionRetries += 1;
      return once(url, timeoutMs);
    }
  };

  const client = async (target: string, slow: boolean) => {
    while (running) {
      const t0 = performance.now();
      if (slow) report.slow.started += 1;
      try {
        const res = await get(target + (slow ? (o.slowPath ?? '/cgi-bin/slow?s=2') : '/'), o.timeoutMs ?? (slow ? 10_000 : 5_000));
        const version = res.body.trim();
        report.requests += 1;
        if (res.status >= 200 && res.status < 300) {
          report.ok += 1;
          report.latenciesMs.push(performance.now() - t0);
          if (slow) {
            report.slow.completed += 1;
            report.slow.versions[version] = (report.slow.versions[version] ?? 0) + 1;
          } else {
            report.versions[version] = (report.versions[version] ?? 0) + 1;
            report.last[target] = version;
          }
        } else {
          if (slow) report.slow.failed += 1;
          report.failures.push({ target, what: `HTTP ${res.status}: ${version.slice(0, 80)}`, at: Date.now() - started });
        }
      } catch (err) {
        report.requests += 1;
        if (slow) report.slow.failed += 1;
        report.failures.push({ target, what: (err as Error).message, at: Date.now() - started });
      }
    }
  };

  const clients: Promise<void>[] = [];
  for (const t of o.targets) {
    for (let i = 0; i < (o.clientsPerTarget ?? 4); i++) clients.push(client(t, false));
    for (let i = 0; i < (o.slowClientsPerTarget ?? 1); i++) clients.push(client(t, true));
  }
  const snapshot = () => ({ ...report, durationMs: Date.now() - started });
  return {
    snapshot,
    async stop() {
      running = false;
      await Promise.all(clients);
      clearTimeout(hardStop);
      agent.destroy();
      return snapshot();
    },
  };
}
