import type { ProxyRouteSpec } from '../domain/app-spec.js';

/**
 * How the executor moves an app's traffic on one host. The per-host HAProxy
 * implements it (haproxy-proxy.ts); apps without a `proxy` route take the no-op path,
 * so the planner's switch and drain steps are always in place.
 */
export interface Upstream {
  containerId: string;
  ip: string;
  port: number;
}

export interface TrafficSwitch {
  /** Routes the app's traffic on `host` to `upstream` (one admin call once the route exists). */
  switchTo(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream): Promise<void>;
  /** Resolves when `upstream` has no in-flight request, or after `timeoutMs`. */
  drain(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream, timeoutMs: number): Promise<void>;
  /**
   * Like drain, for an `upstream` that may still be the one serving (rollout.strategy:
   * recreate stops it before its replacement starts): it gets no new request from now on.
   */
  withdraw(host: string, app: string, route: ProxyRouteSpec | null, upstream: Upstream, timeoutMs: number): Promise<void>;
  /** The app's route on the host's proxy now: where it sends traffic, and any maintenance message. */
  observeRoute(host: string, app: string, route: ProxyRouteSpec): Promise<RouteState>;
  /**
   * Every app's route on the host's proxy from one read (a resync's snapshot,
   * src/reconciler/resync-snapshot.ts): what observeRoute would answer for each. Optional:
   * without it each pass reads its own route.
   */
  observeRoutes?(host: string): Promise<(app: string, route: ProxyRouteSpec) => RouteState>;
  /** Maintenance on (the proxy answers 503 with `message`) or off (null) for the app on `host`. */
  setMaintenance(host: string, app: string, route: ProxyRouteSpec, message: string | null): Promise<void>;
  /**
   * Takes the app's route off the host's proxy (an app being deleted) and resolves when the
   * requests it had in flight are answered, or after `timeoutMs`. Nothing to do when the
   * host has no route for it, or no proxy.
   */
  removeRoute(host: string, app: string, timeoutMs: number): Promise<void>;
}

/** A host's proxy as `berth hosts` shows it. */
export interface ProxyStatus {
  /** `running`: its runtime API answers; `not answering`: the container runs but the API does not; `stopped`; `missing`: no proxy container. */
  state: 'running' | 'not answering' | 'stopped' | 'missing';
  /** The proxy container's image (null when missing). */
  image: string | null;
  /** Apps it routes (running only). */
  routes: number;
  /** When this was read (ISO). */
  checkedAt: string;
}

export interface RouteState {
  /** `ip:port` the route sends traffic to, or null when the host has no route for the app. */
  upstream: string | null;
  maintenance: string | null;
}

/** For deployments without berth's proxy: nothing to switch, nothing to drain. */
export const directTraffic: TrafficSwitch = {
  async switchTo() {},
  async drain() {},
  async withdraw() {},
  async observeRoute() {
    return { upstream: null, maintenance: null };
  },
  async observeRoutes() {
    return () => ({ upstream: null, maintenance: null });
  },
  async setMaintenance() {},
  async removeRoute() {},
};
