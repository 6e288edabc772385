/**
 * How the executor moves an app's traffic on one host. The per-host Caddy proxy
 * implements it; until an app has a `proxy` route, the pass-through below keeps the
 * planner's switch and drain steps in place with nothing to do.
 */
export interface Upstream {
  containerId: string;
  ip: string;
  port: number;
}

export interface TrafficSwitch {
  /** Routes the app's traffic on `host` to `upstream` (one admin call). */
  switchTo(host: string, app: string, upstream: Upstream): Promise<void>;
  /** Resolves when `upstream` has no in-flight request, or after `timeoutMs`. */
  drain(host: string, app: string, upstream: Upstream, timeoutMs: number): Promise<void>;
}

export const directTraffic: TrafficSwitch = {
  async switchTo() {},
  async drain() {},
};
