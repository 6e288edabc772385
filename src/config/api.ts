/**
 * What the API's listen address means for its exposure, decided once at startup
 * (src/main.ts) from the effective `api` config (file + BERTH_LISTEN):
 *
 * - berth serves plain HTTP. On an address other than loopback, requests and the bearer
 *   token cross the network in clear text: the daemon starts, with a warning that says so
 *   and what to do instead (bind to loopback, put a TLS-terminating proxy in front).
 * - `open_reads` is honoured only on a loopback listener. On any other listener it is
 *   ignored (reads need the token, as if it were false), with a warning. It is not a
 *   config error because the listen address often comes from the environment
 *   (BERTH_LISTEN, which the container image sets to 0.0.0.0:7373) and the same config
 *   file should start in both places; ignoring it fails closed.
 *
 * Loopback: 127.0.0.0/8, ::1 (any spelling), ::ffff:127.0.0.0/104 and the name
 * `localhost`. Any other name counts as not loopback, whatever it resolves to.
 */
import { BlockList, isIP } from 'node:net';
import type { ApiConfig } from '../domain/app-spec.js';
import { parseListen } from './values.js';

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/** Whether a listen host (as parseListen returns it: no brackets) is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 6 ? 'ipv6' : 'ipv4');
}

export interface ApiExposure {
  /** Whether the listen address is a loopback one. */
  loopback: boolean;
  /** `api.openReads` as it applies: false on a non-loopback listener. */
  openReads: boolean;
  /** What to log as warnings at startup (empty on loopback). */
  warnings: string[];
}

export function apiExposure(api: ApiConfig): ApiExposure {
  const listen = parseListen(api.listen);
  const loopback = listen !== null && isLoopbackHost(listen.host);
  if (loopback) return { loopback, openReads: api.openReads, warnings: [] };
  const warnings = [
    `the API listens on ${api.listen}, not a loopback address, without TLS: requests and the bearer token travel in clear text. ` +
      'Unless the network between clients and berth is trusted, bind it to 127.0.0.1 (api.listen or BERTH_LISTEN; in a container, ' +
      'publish the port on the host\'s loopback only: -p 127.0.0.1:7373:7373) and put a TLS-terminating reverse proxy in front',
  ];
  if (api.openReads) {
    warnings.push(
      `api.open_reads is ignored: it is honoured only on a loopback listener, and ${api.listen} is not one, so reads need the bearer token. ` +
        'Bind the API to 127.0.0.1 to use it, or remove open_reads from the config',
    );
  }
  return { loopback, openReads: false, warnings };
}
