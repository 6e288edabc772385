import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SEED_DEFAULTS, type AppSpec, type BerthConfig } from '../../src/domain/app-spec.js';
import { ConfigError } from '../../src/domain/errors.js';
import { appDocument } from '../../src/config/app-document.js';
import { formatDuration, parseDuration } from '../../src/config/duration.js';
import { apiExposure, isLoopbackHost } from '../../src/config/api.js';
import { applyEnv, loadConfig, parseYaml } from '../../src/config/load.js';
import { routeConflicts } from '../../src/config/routes.js';
import { validateAppDocument, validateConfigDocument } from '../../src/config/validate.js';

const FP = 'SHA256:XC9kx/Ie/V+149akmavl6sskiub28AhTh8mgVtEO9f0';
const OPTS = { homeDir: '/home/op', baseDir: '/etc/berth' };

/** Three valid remote hosts, so app cases only exercise the app. */
const HOSTS = `
hosts:
  h1: { address: 10.77.0.11, host_key: "${FP}" }
  h2: { address: 10.77.0.12, host_key: "${FP}" }
  h3: { address: 10.77.0.13, host_key: "${FP}" }
`;

/** An app `web` on the three hosts, with `extra` YAML lines (already indented 4) added. */
function web(extra = ''): string {
  return `${HOSTS}apps:\n  web:\n    image: 10.77.0.1:5000/web\n    hosts: [h1, h2, h3]\n${extra}`;
}

/** The `path: message` lines a document is rejected with ([] when it is valid). */
function errorsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

const configErrors = (yaml: string): string[] => errorsOf(() => validateConfigDocument(parseYaml(yaml), OPTS));

describe('parseDuration / formatDuration', () => {
  const valid: Array<[string, number]> = [
    ['0s', 0],
    ['0ms', 0],
    ['500ms', 500],
    ['5s', 5_000],
    ['1.5s', 1_500],
    ['1.1s', 1_100],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['1m30s', 90_000],
    ['1h2m3s4ms', 3_723_004],
    ['0.5m', 30_000],
    ['10m', 600_000],
    ['30d', 2_592_000_000],
    ['1d12h', 129_600_000],
  ];
  for (const [s, ms] of valid) test(`"${s}" = ${ms}ms`, () => assert.equal(parseDuration(s), ms));

  const invalid = ['', '5', '0', 'fast', '5 s', ' 5s', '5s ', '-5s', '+5s', '5S', '.5s', '5.s', '1D', '1h1d', '5sec', '30s1m', '5s5s', '1s1h', '0.5ms', '1.0005s', 'ms', '1e3ms', '1_000ms'];
  for (const s of invalid) test(`"${s}" is not a duration`, () => assert.equal(parseDuration(s), null));

  const formatted: Array<[number, string]> = [
    [0, '0s'],
    [1, '1ms'],
    [500, '500ms'],
    [1_500, '1s500ms'],
    [5_000, '5s'],
    [90_000, '1m30s'],
    [600_000, '10m'],
    [3_600_000, '1h'],
    [3_723_004, '1h2m3s4ms'],
  ];
  for (const [ms, s] of formatted) test(`format ${ms} = "${s}"`, () => assert.equal(formatDuration(ms), s));

  test('format then parse gives the same milliseconds', () => {
    for (const ms of [0, 1, 999, 1_000, 59_999, 60_001, 3_599_999, 86_400_000, 123_456_789]) {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }
  });
});

describe('malformed configs: every one rejected with the exact issue', () => {
  const cases: Array<{ name: string; yaml: string; errors: string[] }> = [
    { name: 'unknown top-level key', yaml: `${web()}bogus: 1\n`, errors: ['bogus: unknown key'] },
    { name: 'unknown app key', yaml: web('    bogus: 1\n'), errors: ['apps.web.bogus: unknown key'] },
    {
      name: 'misspelt key gets a hint',
      yaml: web('    helthcheck: { path: /up }\n'),
      errors: ['apps.web.helthcheck: unknown key (did you mean healthcheck?)'],
    },
    {
      name: 'camelCase key gets the snake_case hint',
      yaml: web('    healthcheck: { maxAttempts: 3 }\n'),
      errors: ['apps.web.healthcheck.maxAttempts: unknown key (did you mean max_attempts?)'],
    },
    { name: 'missing image', yaml: `${HOSTS}apps:\n  web: { hosts: [h1] }\n`, errors: ['apps.web.image: required'] },
    {
      name: 'missing hosts',
      yaml: `${HOSTS}apps:\n  web: { image: web }\n`,
      errors: ['apps.web.hosts: required'],
    },
    {
      name: 'empty app',
      yaml: `${HOSTS}apps:\n  web:\n`,
      errors: ['apps.web.image: required', 'apps.web.hosts: required'],
    },
    {
      name: 'app is not a map',
      yaml: `${HOSTS}apps:\n  web: [h1]\n`,
      errors: ['apps.web: expected a map, got a list'],
    },
    {
      name: 'invalid app name',
      yaml: `${HOSTS}apps:\n  Web: { image: web, hosts: [h1] }\n`,
      errors: ['apps.Web: invalid app name: expected lowercase letters, digits and "-", starting with a letter, at most 63 characters'],
    },
    {
      name: 'image with a tag',
      yaml: `${HOSTS}apps:\n  web: { image: "web:v1", hosts: [h1] }\n`,
      errors: ['apps.web.image: expected an image repository without tag or digest, like "10.77.0.1:5000/web", got "web:v1"'],
    },
    {
      name: 'unknown host',
      yaml: `${HOSTS}apps:\n  web: { image: web, hosts: [h1, h2, h9] }\n`,
      errors: ['apps.web.hosts[2]: unknown host "h9" (known: h1, h2, h3)'],
    },
    {
      name: 'duplicate host',
      yaml: `${HOSTS}apps:\n  web: { image: web, hosts: [h1, h1] }\n`,
      errors: ['apps.web.hosts[1]: duplicate host "h1"'],
    },
    {
      name: 'empty host list',
      yaml: `${HOSTS}apps:\n  web: { image: web, hosts: [] }\n`,
      errors: ['apps.web.hosts: expected at least one host'],
    },
    {
      name: 'hosts is a string',
      yaml: `${HOSTS}apps:\n  web: { image: web, hosts: h1 }\n`,
      errors: ['apps.web.hosts: expected a list of host names, got "h1"'],
    },
    { name: 'port 0', yaml: web('    port: 0\n'), errors: ['apps.web.port: expected an integer from 1 to 65535, got 0'] },
    {
      name: 'port as a string',
      yaml: web('    port: "3000"\n'),
      errors: ['apps.web.port: expected an integer from 1 to 65535, got "3000"'],
    },
    {
      name: 'healthcheck interval not a duration',
      yaml: web('    healthcheck: { interval: fast }\n'),
      errors: ['apps.web.healthcheck.interval: expected a duration like "5s", got "fast"'],
    },
    {
      name: 'healthcheck interval without a unit',
      yaml: web('    healthcheck: { interval: 5 }\n'),
      errors: ['apps.web.healthcheck.interval: expected a duration like "5s", got 5 (durations need a unit: ms, s, m or h)'],
    },
    {
      name: 'healthcheck interval too short',
      yaml: web('    healthcheck: { interval: 50ms }\n'),
      errors: ['apps.web.healthcheck.interval: expected a duration from 100ms to 1h, got "50ms"'],
    },
    {
      name: 'healthcheck max_attempts 0',
      yaml: web('    healthcheck: { max_attempts: 0 }\n'),
      errors: ['apps.web.healthcheck.max_attempts: expected an integer from 1 to 1000, got 0'],
    },
    {
      name: 'healthcheck path without a slash',
      yaml: web('    healthcheck: { path: health }\n'),
      errors: ['apps.web.healthcheck.path: expected an HTTP path starting with "/", got "health"'],
    },
    {
      name: 'healthcheck is a string',
      yaml: web('    healthcheck: /health\n'),
      errors: ['apps.web.healthcheck: expected a map, got "/health"'],
    },
    {
      name: 'parallelism 0',
      yaml: web('    rollout: { parallelism: 0 }\n'),
      errors: ['apps.web.rollout.parallelism: expected a positive integer or a percentage like "30%", got 0'],
    },
    {
      name: 'parallelism fractional',
      yaml: web('    rollout: { parallelism: 1.5 }\n'),
      errors: ['apps.web.rollout.parallelism: expected a positive integer or a percentage like "30%", got 1.5'],
    },
    {
      name: 'parallelism 0%',
      yaml: web('    rollout: { parallelism: 0% }\n'),
      errors: ['apps.web.rollout.parallelism: expected a percentage from 1% to 100%, got "0%"'],
    },
    {
      name: 'parallelism 150%',
      yaml: web('    rollout: { parallelism: 150% }\n'),
      errors: ['apps.web.rollout.parallelism: expected a percentage from 1% to 100%, got "150%"'],
    },
    {
      name: 'on_failure not a policy',
      yaml: web('    rollout: { on_failure: explode }\n'),
      errors: ['apps.web.rollout.on_failure: expected one of rollback, pause, continue, got "explode"'],
    },
    {
      name: 'strategy not a strategy',
      yaml: web('    rollout: { strategy: blue-green }\n'),
      errors: ['apps.web.rollout.strategy: expected one of start-first, recreate, got "blue-green"'],
    },
    {
      name: 'preboot not a boolean',
      yaml: web('    rollout: { preboot: yes please }\n'),
      errors: ['apps.web.rollout.preboot: expected true or false, got "yes please"'],
    },
    {
      name: 'preboot with recreate (which never runs two containers)',
      yaml: web('    rollout: { strategy: recreate, preboot: true }\n'),
      errors: ['apps.web.rollout.preboot: recreate never runs two containers of a unit, so it cannot pre-boot: drop preboot, or use strategy: start-first'],
    },
    {
      name: 'max_failure_ratio above 1',
      yaml: web('    rollout: { max_failure_ratio: 1.5 }\n'),
      errors: ['apps.web.rollout.max_failure_ratio: expected a number from 0 to 1, got 1.5'],
    },
    {
      name: 'progress_deadline too short',
      yaml: web('    rollout: { progress_deadline: 500ms }\n'),
      errors: ['apps.web.rollout.progress_deadline: expected a duration from 1s to 1d, got "500ms"'],
    },
    {
      name: 'empty hook command',
      yaml: web('    hooks: { pre_deploy: ["bin/migrate", ""] }\n'),
      errors: ['apps.web.hooks.pre_deploy[1]: expected a non-empty command string, got ""'],
    },
    {
      name: 'hook commands not a list',
      yaml: web('    hooks: { post_deploy: bin/notify }\n'),
      errors: ['apps.web.hooks.post_deploy: expected a list of commands, got "bin/notify"'],
    },
    {
      name: 'retain_containers too many',
      yaml: web('    retain_containers: 101\n'),
      errors: ['apps.web.retain_containers: expected an integer from 0 to 100, got 101'],
    },
    {
      name: 'history_limit zero',
      yaml: web('    history_limit: 0\n'),
      errors: ['apps.web.history_limit: expected an integer from 1 to 10000, got 0'],
    },
    {
      name: 'history_limit too many',
      yaml: web('    history_limit: 100000\n'),
      errors: ['apps.web.history_limit: expected an integer from 1 to 10000, got 100000'],
    },
    {
      name: 'history_limit not a number',
      yaml: web('    history_limit: lots\n'),
      errors: ['apps.web.history_limit: expected an integer from 1 to 10000, got "lots"'],
    },
    {
      name: 'stop_timeout too long',
      yaml: web('    stop_timeout: 2h\n'),
      errors: ['apps.web.stop_timeout: expected a duration of at most 1h, got "2h"'],
    },
    {
      name: 'proxy without port or host',
      yaml: web('    proxy: { drain_timeout: 5s }\n'),
      errors: ['apps.web.proxy: expected port or host (or both)'],
    },
    {
      name: 'tls without a host',
      yaml: web('    proxy: { port: 8080, tls: true }\n'),
      errors: ['apps.web.proxy.tls: TLS needs proxy.host: a certificate is for a host name', 'apps.web.proxy.port: ACME validates on port 80 (HTTP-01): leave proxy.port out or set it to 80 (HTTPS is always on 443)'],
    },
    {
      name: 'tls from ACME for a wildcard host',
      yaml: web('    proxy: { host: "*.example.com", tls: true }\n'),
      errors: ['apps.web.proxy.tls: ACME (HTTP-01) cannot issue a certificate for a wildcard host "*.example.com": give one with tls: {certificate, private_key}'],
    },
    {
      name: 'tls with port 443 as the plain port',
      yaml: web('    proxy: { host: app.example.com, port: 443, tls: { certificate: CRT, private_key: KEY } }\n'),
      errors: ['apps.web.proxy.port: HTTPS is always on port 443; proxy.port is the plain HTTP port that redirects to it (leave it out for 80)'],
    },
    {
      name: 'tls neither a boolean nor a map',
      yaml: web('    proxy: { host: app.example.com, tls: "yes" }\n'),
      errors: ['apps.web.proxy.tls: expected true (a certificate from ACME), false, or {certificate, private_key} (names of secrets holding PEM), got "yes"'],
    },
    {
      name: 'given tls: a key missing, a reserved name, an unknown key',
      yaml: web('    proxy: { host: app.example.com, tls: { certificate: BERTH_TOKEN, key: KEY } }\n'),
      errors: [
        'apps.web.proxy.tls.key: unknown key',
        'apps.web.proxy.tls.certificate: "BERTH_TOKEN" is reserved: names starting with BERTH_ (any case) are berth\'s own settings, its API token among them, and never go to apps',
        'apps.web.proxy.tls.private_key: required',
      ],
    },
    {
      name: 'proxy port out of range',
      yaml: web('    proxy: { port: 70000 }\n'),
      errors: ['apps.web.proxy.port: expected an integer from 1 to 65535, got 70000'],
    },
    {
      name: 'proxy host not a host name',
      yaml: web('    proxy: { host: "app example.com" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "app example.com"'],
    },
    {
      name: 'proxy host with a scheme',
      yaml: web('    proxy: { host: "https://app.example.com" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "https://app.example.com" (no scheme: the host name only)'],
    },
    {
      name: 'proxy host with a port',
      yaml: web('    proxy: { host: "app.example.com:443" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "app.example.com:443" (no port: the proxy port is proxy.port)'],
    },
    {
      name: 'proxy host with a path',
      yaml: web('    proxy: { host: "app.example.com/api" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "app.example.com/api" (no path: paths go in proxy.path_prefix)'],
    },
    {
      name: 'proxy host with a wildcard that is not the whole first label',
      yaml: web('    proxy: { host: "*app.example.com" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "*app.example.com" (a wildcard is only allowed as the whole first label)'],
    },
    {
      name: 'proxy host with a wildcard in the middle',
      yaml: web('    proxy: { host: "app.*.example.com" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "app.*.example.com" (a wildcard is only allowed as the whole first label)'],
    },
    {
      name: 'proxy host a bare wildcard',
      yaml: web('    proxy: { host: "*" }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "*" (a wildcard is only allowed as the whole first label)'],
    },
    {
      name: 'proxy host with a trailing dot',
      yaml: web('    proxy: { host: "app.example.com." }\n'),
      errors: ['apps.web.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "app.example.com." (no trailing dot)'],
    },
    {
      name: 'proxy path_prefix without a leading slash',
      yaml: web('    proxy: { host: app.example.com, path_prefix: api }\n'),
      errors: ['apps.web.proxy.path_prefix: expected a path prefix like "/api", got "api" (it must start with "/")'],
    },
    {
      name: 'proxy path_prefix with a query',
      yaml: web('    proxy: { host: app.example.com, path_prefix: "/api?v=1" }\n'),
      errors: ['apps.web.proxy.path_prefix: expected a path prefix like "/api", got "/api?v=1" (no query string or fragment)'],
    },
    {
      name: 'proxy path_prefix with a space',
      yaml: web('    proxy: { host: app.example.com, path_prefix: "/my api" }\n'),
      errors: ['apps.web.proxy.path_prefix: expected a path prefix like "/api", got "/my api" (letters, digits and -._~!$&\'()+,;=:@ only: no spaces, "%" or "*")'],
    },
    {
      name: 'proxy path_prefix with an empty segment',
      yaml: web('    proxy: { host: app.example.com, path_prefix: "/api//v2" }\n'),
      errors: ['apps.web.proxy.path_prefix: expected a path prefix like "/api", got "/api//v2" (no empty segments: "//")'],
    },
    {
      name: 'proxy path_prefix with a dot-dot segment',
      yaml: web('    proxy: { host: app.example.com, path_prefix: "/api/../admin" }\n'),
      errors: ['apps.web.proxy.path_prefix: expected a path prefix like "/api", got "/api/../admin" (no "." or ".." segments)'],
    },
    {
      name: 'proxy path_prefix not a string',
      yaml: web('    proxy: { host: app.example.com, path_prefix: 1 }\n'),
      errors: ['apps.web.proxy.path_prefix: expected a path prefix like "/api", got 1'],
    },
    {
      name: 'env value is a number',
      yaml: web('    env: { WORKERS: 4 }\n'),
      errors: ['apps.web.env.WORKERS: expected a string, got 4 (quote it: "4")'],
    },
    {
      name: 'env value is a list',
      yaml: web('    env: { PATHS: [a, b] }\n'),
      errors: ['apps.web.env.PATHS: expected a string, got a list'],
    },
    {
      name: 'env name invalid',
      yaml: web('    env: { "1ST": x }\n'),
      errors: ['apps.web.env["1ST"]: invalid variable name: expected letters, digits and "_", not starting with a digit'],
    },
    {
      name: 'secret name invalid',
      yaml: web('    secrets: [DATABASE-URL]\n'),
      errors: ['apps.web.secrets[0]: expected a variable name (letters, digits and "_", not starting with a digit), got "DATABASE-URL"'],
    },
    {
      name: 'secret also in env',
      yaml: web('    env: { DATABASE_URL: "postgres://x" }\n    secrets: [DATABASE_URL]\n'),
      errors: ['apps.web.secrets[0]: "DATABASE_URL" is also set in env; a variable is either in env or in secrets'],
    },
    {
      name: 'duplicate secret',
      yaml: web('    secrets: [A, A]\n'),
      errors: ['apps.web.secrets[1]: duplicate secret "A"'],
    },
    {
      name: 'host without address',
      yaml: `hosts:\n  h1: { host_key: "${FP}" }\n`,
      errors: ['hosts.h1.address: required'],
    },
    {
      name: 'host without a way to verify its key',
      yaml: `hosts:\n  h1: { address: 10.77.0.11 }\n`,
      errors: ['hosts.h1: host_key or known_hosts is required: berth never accepts an unverified host key'],
    },
    {
      name: 'host_key not a SHA256 fingerprint',
      yaml: `hosts:\n  h1: { address: 10.77.0.11, host_key: "MD5:aa:bb" }\n`,
      errors: ['hosts.h1.host_key: expected a fingerprint like "SHA256:..." as ssh-keygen -lf prints it, got "MD5:aa:bb"'],
    },
    {
      name: 'host address not an address',
      yaml: `hosts:\n  h1: { address: "10.77.0.11 ; rm", host_key: "${FP}" }\n`,
      errors: ['hosts.h1.address: expected an IP address or DNS name, got "10.77.0.11 ; rm"'],
    },
    {
      name: 'local host with SSH fields',
      yaml: `hosts:\n  here: { local: true, address: 127.0.0.1, user: root }\n`,
      errors: ['hosts.here.address: not used by a local host (local: true)', 'hosts.here.user: not used by a local host (local: true)'],
    },
    {
      name: 'local is not a boolean',
      yaml: `hosts:\n  here: { local: "yes" }\n`,
      errors: ['hosts.here.local: expected true or false, got "yes"', 'hosts.here.address: required', 'hosts.here: host_key or known_hosts is required: berth never accepts an unverified host key'],
    },
    {
      name: 'docker_socket relative',
      yaml: `hosts:\n  here: { local: true, docker_socket: run/docker.sock }\n`,
      errors: ['hosts.here.docker_socket: expected an absolute path, got "run/docker.sock"'],
    },
    {
      name: 'ssh_key with ~user',
      yaml: `hosts:\n  h1: { address: 10.77.0.11, host_key: "${FP}", ssh_key: ~bob/.ssh/id }\n`,
      errors: ['hosts.h1.ssh_key: expected a file path, got "~bob/.ssh/id" (only "~/" is expanded)'],
    },
    {
      name: 'invalid host name',
      yaml: `hosts:\n  "bad host": { local: true }\n`,
      errors: ['hosts["bad host"]: invalid host name: expected letters, digits, "_", "." and "-", starting with a letter or digit, at most 63 characters'],
    },
    { name: 'hosts is a list', yaml: 'hosts: [h1, h2]\n', errors: ['hosts: expected a map, got a list'] },
    { name: 'document is a list', yaml: '- hosts\n- apps\n', errors: ['(root): expected a map, got a list'] },
    {
      name: 'proxy image invalid',
      yaml: 'proxy: { image: "Caddy:2" }\n',
      errors: ['proxy.image: expected an image reference like "haproxy:2.6", got "Caddy:2"'],
    },
    {
      name: 'listen without a host',
      yaml: 'api: { listen: "7373" }\n',
      errors: ['api.listen: expected host:port like "127.0.0.1:7373", got "7373"'],
    },
    {
      name: 'token never echoed',
      yaml: 'api: { token: 12345678 }\n',
      errors: ['api.token: expected a non-empty string of printable characters without spaces (value not shown)'],
    },
    { name: 'open_reads not a boolean', yaml: 'api: { open_reads: "no" }\n', errors: ['api.open_reads: expected true or false, got "no"'] },
    {
      name: 'resync_interval too short',
      yaml: 'controller: { resync_interval: 100ms }\n',
      errors: ['controller.resync_interval: expected a duration from 1s to 1h, got "100ms"'],
    },
    {
      name: 'registry credentials without a password',
      yaml: 'registries:\n  ghcr.io: { username: ci-bot }\n',
      errors: ['registries["ghcr.io"].password: required'],
    },
    {
      name: 'registry password written as the value itself: refused without echoing it',
      yaml: 'registries:\n  ghcr.io: { username: ci-bot, password: "hunter2!" }\n',
      errors: [
        'registries["ghcr.io"].password: expected the name of the line of registries.env (next to berth\'s database) that holds the password, like GHCR_TOKEN: letters, digits and "_", not starting with a digit (value not shown)',
      ],
    },
    {
      name: 'registry user with a ":" (basic auth splits user:password at the first one)',
      yaml: 'registries:\n  ghcr.io: { username: "ci:bot", password: GHCR_TOKEN }\n',
      errors: ['registries["ghcr.io"].username: expected a user name without blanks or ":", got "ci:bot"'],
    },
    {
      name: 'unknown registry key',
      yaml: 'registries:\n  ghcr.io: { username: ci-bot, password: GHCR_TOKEN, token: x }\n',
      errors: ['registries["ghcr.io"].token: unknown key'],
    },
    {
      name: 'registries keyed by something that is not a registry host, each with its hint',
      yaml: [
        'registries:',
        '  ghcr: { username: u, password: P }',
        '  "https://ghcr.io": { username: u, password: P }',
        '  ghcr.io/acme: { username: u, password: P }',
        '  GHCR.io: { username: u, password: P }',
        '  index.docker.io: { username: u, password: P }',
        '',
      ].join('\n'),
      errors: [
        'registries.ghcr: expected a registry host as image names start with it: lowercase, with a dot or a port, or localhost (ghcr.io, 10.0.0.5:5000)',
        'registries["https://ghcr.io"]: expected a registry host as image names start with it: lowercase, with a dot or a port, or localhost (ghcr.io, 10.0.0.5:5000): leave out the scheme (ghcr.io)',
        'registries["ghcr.io/acme"]: expected a registry host as image names start with it: lowercase, with a dot or a port, or localhost (ghcr.io, 10.0.0.5:5000): credentials are per registry, not per repository (ghcr.io)',
        'registries["GHCR.io"]: expected a registry host as image names start with it: lowercase, with a dot or a port, or localhost (ghcr.io, 10.0.0.5:5000): write it in lowercase (ghcr.io)',
        'registries["index.docker.io"]: Docker Hub is "docker.io" here, as Docker names it',
      ],
    },
    {
      name: 'two apps claim the same proxy route on a shared host',
      yaml: `${HOSTS}apps:\n  web: { image: web, hosts: [h1, h2], proxy: { port: 80 } }\n  api: { image: api, hosts: [h2, h3], proxy: { port: 80 } }\n`,
      errors: ['apps.api.proxy: route port 80 any host is the same as app "web"\'s route (port 80 any host) on host h2'],
    },
  ];

  assert.ok(cases.length >= 30);
  for (const c of cases) test(c.name, () => assert.deepEqual(configErrors(c.yaml), c.errors));
});

/**
 * Proxy routes of two apps (src/config/routes.ts). Each case is run in both orders:
 * the later app's proxy gets the issue, naming the earlier app. `webLast` and
 * `blogLast` are the messages when web (or blog) comes second; null: no conflict.
 */
describe('proxy routes between apps: conflicts refused, in both orders', () => {
  const hostMap = (parseYaml(HOSTS) as { hosts: Record<string, unknown> }).hosts;
  const ON = 'on hosts h1, h2';
  const OWNS = 'a route without a host owns its port, no other app may route by host there';
  interface Side {
    proxy: Record<string, unknown>;
    hosts?: string[];
  }
  interface RouteCase {
    name: string;
    web: Side;
    blog: Side;
    blogLast: string | null;
    webLast: string | null;
  }
  const cases: RouteCase[] = [
    // a. the same host (or both without one) and overlapping paths
    {
      name: 'a: the same exact host and port',
      web: { proxy: { port: 80, host: 'app.example.com' } },
      blog: { proxy: { port: 80, host: 'app.example.com' } },
      blogLast: `route port 80 host "app.example.com" is the same as app "web"'s route (port 80 host "app.example.com") ${ON}`,
      webLast: `route port 80 host "app.example.com" is the same as app "blog"'s route (port 80 host "app.example.com") ${ON}`,
    },
    {
      name: 'a: a host without a port is port 80',
      web: { proxy: { port: 80, host: 'app.example.com' } },
      blog: { proxy: { host: 'app.example.com' } },
      blogLast: `route port 80 host "app.example.com" is the same as app "web"'s route (port 80 host "app.example.com") ${ON}`,
      webLast: `route port 80 host "app.example.com" is the same as app "blog"'s route (port 80 host "app.example.com") ${ON}`,
    },
    {
      name: 'a: host names compare lowercase',
      web: { proxy: { host: 'App.Example.COM' } },
      blog: { proxy: { host: 'app.example.com' } },
      blogLast: `route port 80 host "app.example.com" is the same as app "web"'s route (port 80 host "app.example.com") ${ON}`,
      webLast: `route port 80 host "app.example.com" is the same as app "blog"'s route (port 80 host "app.example.com") ${ON}`,
    },
    {
      name: 'a: the same wildcard',
      web: { proxy: { host: '*.example.com' } },
      blog: { proxy: { host: '*.example.com' } },
      blogLast: `route port 80 host "*.example.com" is the same as app "web"'s route (port 80 host "*.example.com") ${ON}`,
      webLast: `route port 80 host "*.example.com" is the same as app "blog"'s route (port 80 host "*.example.com") ${ON}`,
    },
    {
      name: 'a: both without a host on the same port',
      web: { proxy: { port: 8080 } },
      blog: { proxy: { port: 8080 } },
      blogLast: `route port 8080 any host is the same as app "web"'s route (port 8080 any host) ${ON}`,
      webLast: `route port 8080 any host is the same as app "blog"'s route (port 8080 any host) ${ON}`,
    },
    {
      name: 'a: a path prefix inside a route for any path (the broader one named)',
      web: { proxy: { host: 'app.example.com' } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api' } },
      blogLast: `route port 80 host "app.example.com" path "/api" is inside app "web"'s route (port 80 host "app.example.com" any path) ${ON}`,
      webLast: `route port 80 host "app.example.com" any path covers app "blog"'s route (port 80 host "app.example.com" path "/api") ${ON}`,
    },
    {
      name: 'a: a path prefix inside another',
      web: { proxy: { host: 'app.example.com', path_prefix: '/api' } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api/v2' } },
      blogLast: `route port 80 host "app.example.com" path "/api/v2" is inside app "web"'s route (port 80 host "app.example.com" path "/api") ${ON}`,
      webLast: `route port 80 host "app.example.com" path "/api" covers app "blog"'s route (port 80 host "app.example.com" path "/api/v2") ${ON}`,
    },
    {
      name: 'a: the same path prefix, written with and without a trailing slash',
      web: { proxy: { host: 'app.example.com', path_prefix: '/api/' } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api' } },
      blogLast: `route port 80 host "app.example.com" path "/api" is the same as app "web"'s route (port 80 host "app.example.com" path "/api") ${ON}`,
      webLast: `route port 80 host "app.example.com" path "/api" is the same as app "blog"'s route (port 80 host "app.example.com" path "/api") ${ON}`,
    },
    {
      name: 'a: path prefix "/" is every path',
      web: { proxy: { host: 'app.example.com', path_prefix: '/' } },
      blog: { proxy: { host: 'app.example.com' } },
      blogLast: `route port 80 host "app.example.com" is the same as app "web"'s route (port 80 host "app.example.com") ${ON}`,
      webLast: `route port 80 host "app.example.com" is the same as app "blog"'s route (port 80 host "app.example.com") ${ON}`,
    },
    {
      name: 'a: without a host, a path prefix inside a route for any path',
      web: { proxy: { port: 8080, path_prefix: '/api' } },
      blog: { proxy: { port: 8080 } },
      blogLast: `route port 8080 any host any path covers app "web"'s route (port 8080 any host path "/api") ${ON}`,
      webLast: `route port 8080 any host path "/api" is inside app "blog"'s route (port 8080 any host any path) ${ON}`,
    },
    // b. a wildcard covering another host
    {
      name: 'b: a wildcard covers an exact host (the hijack: port 80 given on one side only)',
      web: { proxy: { port: 80, host: 'app.example.com' } },
      blog: { proxy: { host: '*.example.com' } },
      blogLast: `route port 80 host "*.example.com" covers app "web"'s route (port 80 host "app.example.com") ${ON}`,
      webLast: `route port 80 host "app.example.com" is inside app "blog"'s route (port 80 host "*.example.com") ${ON}`,
    },
    {
      name: 'b: a wildcard covers subdomains at any depth',
      web: { proxy: { host: 'a.b.example.com' } },
      blog: { proxy: { host: '*.example.com' } },
      blogLast: `route port 80 host "*.example.com" covers app "web"'s route (port 80 host "a.b.example.com") ${ON}`,
      webLast: `route port 80 host "a.b.example.com" is inside app "blog"'s route (port 80 host "*.example.com") ${ON}`,
    },
    {
      name: 'b: a wildcard covers a narrower wildcard',
      web: { proxy: { host: '*.eu.example.com' } },
      blog: { proxy: { host: '*.example.com' } },
      blogLast: `route port 80 host "*.example.com" covers app "web"'s route (port 80 host "*.eu.example.com") ${ON}`,
      webLast: `route port 80 host "*.eu.example.com" is inside app "blog"'s route (port 80 host "*.example.com") ${ON}`,
    },
    {
      name: 'b: a wildcard covers an exact host whatever the paths',
      web: { proxy: { host: 'app.example.com', path_prefix: '/admin' } },
      blog: { proxy: { host: '*.example.com', path_prefix: '/api' } },
      blogLast: `route port 80 host "*.example.com" path "/api" covers app "web"'s route (port 80 host "app.example.com" path "/admin") ${ON}`,
      webLast: `route port 80 host "app.example.com" path "/admin" is inside app "blog"'s route (port 80 host "*.example.com" path "/api") ${ON}`,
    },
    // c. a route without a host next to a host route on the same port
    {
      name: 'c: a route without a host next to a host route on port 80',
      web: { proxy: { host: 'app.example.com' } },
      blog: { proxy: { port: 80 } },
      blogLast: `route port 80 any host conflicts with app "web"'s route (port 80 host "app.example.com") ${ON}: ${OWNS}`,
      webLast: `route port 80 host "app.example.com" conflicts with app "blog"'s route (port 80 any host) ${ON}: ${OWNS}`,
    },
    {
      name: 'c: a route without a host next to a wildcard route, whatever the paths',
      web: { proxy: { port: 8080, host: '*.example.com', path_prefix: '/admin' } },
      blog: { proxy: { port: 8080, path_prefix: '/api' } },
      blogLast: `route port 8080 any host path "/api" conflicts with app "web"'s route (port 8080 host "*.example.com" path "/admin") ${ON}: ${OWNS}`,
      webLast: `route port 8080 host "*.example.com" path "/admin" conflicts with app "blog"'s route (port 8080 any host path "/api") ${ON}: ${OWNS}`,
    },
    // d. HTTPS and plain HTTP on one port (a TLS route also listens on 443)
    {
      name: 'd: a plain route on port 443 next to a TLS route, whatever the hosts',
      web: { proxy: { host: 'app.example.com', tls: true } },
      blog: { proxy: { port: 443, host: 'blog.example.com' } },
      blogLast: `route port 443 host "blog.example.com" conflicts with app "web"'s route (port 443 (HTTPS) host "app.example.com") ${ON}: port 443 cannot serve both HTTPS and plain HTTP`,
      webLast: `route port 443 (HTTPS) host "app.example.com" conflicts with app "blog"'s route (port 443 host "blog.example.com") ${ON}: port 443 cannot serve both HTTPS and plain HTTP`,
    },
    {
      name: 'c: a port-only route on 443 next to a TLS route',
      web: { proxy: { host: 'app.example.com', tls: true } },
      blog: { proxy: { port: 443 } },
      blogLast: `route port 443 any host conflicts with app "web"'s route (port 443 (HTTPS) host "app.example.com") ${ON}: port 443 cannot serve both HTTPS and plain HTTP`,
      webLast: `route port 443 (HTTPS) host "app.example.com" conflicts with app "blog"'s route (port 443 any host) ${ON}: port 443 cannot serve both HTTPS and plain HTTP`,
    },
    {
      name: 'a: two TLS routes for the same host',
      web: { proxy: { host: 'app.example.com', tls: true } },
      blog: { proxy: { host: 'app.example.com', tls: true } },
      blogLast: `route port 80 host "app.example.com" is the same as app "web"'s route (port 80 host "app.example.com") ${ON}`,
      webLast: `route port 80 host "app.example.com" is the same as app "blog"'s route (port 80 host "app.example.com") ${ON}`,
    },
    // e. one host name, different TLS settings, even on disjoint paths
    {
      name: 'a: a TLS route for a whole host covers a plain path of it',
      web: { proxy: { host: 'app.example.com', tls: true } , hosts: ['h1', 'h2'] },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api', port: 80 } },
      blogLast: `route port 80 host "app.example.com" path "/api" is inside app "web"'s route (port 80 host "app.example.com" any path) ${ON}`,
      webLast: `route port 80 host "app.example.com" any path covers app "blog"'s route (port 80 host "app.example.com" path "/api") ${ON}`,
    },
    {
      name: 'e: disjoint paths of one host, ACME and a given certificate',
      web: { proxy: { host: 'app.example.com', path_prefix: '/web', tls: true } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api', tls: { certificate: 'CRT', private_key: 'KEY' } } },
      blogLast: `route for host "app.example.com" has other TLS settings than app "web"'s route for the same host ${ON}: one certificate serves a host name, so every app on it needs the same proxy.tls`,
      webLast: `route for host "app.example.com" has other TLS settings than app "blog"'s route for the same host ${ON}: one certificate serves a host name, so every app on it needs the same proxy.tls`,
    },
    {
      name: 'e: disjoint paths of one host, TLS and plain',
      web: { proxy: { host: 'app.example.com', path_prefix: '/web', tls: true } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api' } },
      blogLast: `route for host "app.example.com" has other TLS settings than app "web"'s route for the same host ${ON}: one certificate serves a host name, so every app on it needs the same proxy.tls`,
      webLast: `route for host "app.example.com" has other TLS settings than app "blog"'s route for the same host ${ON}: one certificate serves a host name, so every app on it needs the same proxy.tls`,
    },
    {
      name: 'ok: disjoint paths of one host, both with ACME (one certificate for both)',
      web: { proxy: { host: 'app.example.com', path_prefix: '/web', tls: true } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/api', tls: true } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: TLS for one host, plain HTTP for another on port 80',
      web: { proxy: { host: 'app.example.com', tls: true } },
      blog: { proxy: { host: 'blog.example.com' } },
      blogLast: null,
      webLast: null,
    },
    // Not conflicts: no request matches both routes.
    {
      name: 'ok: different ports',
      web: { proxy: { port: 80, host: 'app.example.com' } },
      blog: { proxy: { port: 8080, host: 'app.example.com' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: a route without a host on another port than a host route',
      web: { proxy: { host: 'app.example.com' } },
      blog: { proxy: { port: 8080 } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: disjoint hosts',
      web: { proxy: { host: 'app.example.com' } },
      blog: { proxy: { host: 'blog.example.com' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: a wildcard does not cover its apex',
      web: { proxy: { host: 'example.com' } },
      blog: { proxy: { host: '*.example.com' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: a wildcard does not cover a name that only ends like it',
      web: { proxy: { host: 'badexample.com' } },
      blog: { proxy: { host: '*.example.com' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: sibling wildcards',
      web: { proxy: { host: '*.eu.example.com' } },
      blog: { proxy: { host: '*.us.example.com' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: the same route on hosts the apps do not share',
      web: { proxy: { port: 80, host: 'app.example.com' }, hosts: ['h1'] },
      blog: { proxy: { port: 80, host: 'app.example.com' }, hosts: ['h2', 'h3'] },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: disjoint path prefixes on the same host',
      web: { proxy: { host: 'app.example.com', path_prefix: '/api' } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/admin' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: path prefixes match whole segments (/api and /apix)',
      web: { proxy: { host: 'app.example.com', path_prefix: '/api' } },
      blog: { proxy: { host: 'app.example.com', path_prefix: '/apix' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: disjoint path prefixes on the same wildcard',
      web: { proxy: { host: '*.example.com', path_prefix: '/api' } },
      blog: { proxy: { host: '*.example.com', path_prefix: '/admin' } },
      blogLast: null,
      webLast: null,
    },
    {
      name: 'ok: disjoint path prefixes, both without a host',
      web: { proxy: { port: 8080, path_prefix: '/api' } },
      blog: { proxy: { port: 8080, path_prefix: '/admin' } },
      blogLast: null,
      webLast: null,
    },
  ];

  const appOf = (image: string, side: Side) => ({ image, hosts: side.hosts ?? ['h1', 'h2'], proxy: side.proxy });
  const errorsInOrder = (first: 'web' | 'blog', c: RouteCase): string[] => {
    const apps = first === 'web' ? { web: appOf('web', c.web), blog: appOf('blog', c.blog) } : { blog: appOf('blog', c.blog), web: appOf('web', c.web) };
    return errorsOf(() => validateConfigDocument({ hosts: hostMap, apps }, OPTS));
  };

  for (const c of cases) {
    test(`${c.name} (blog second)`, () => {
      assert.deepEqual(errorsInOrder('web', c), c.blogLast === null ? [] : [`apps.blog.proxy: ${c.blogLast}`]);
    });
    test(`${c.name} (web second)`, () => {
      assert.deepEqual(errorsInOrder('blog', c), c.webLast === null ? [] : [`apps.web.proxy: ${c.webLast}`]);
    });
  }

  test('only the shared hosts are named', () => {
    const apps = {
      web: { image: 'web', hosts: ['h1', 'h2'], proxy: { host: 'app.example.com' } },
      blog: { image: 'blog', hosts: ['h2', 'h3'], proxy: { host: '*.example.com' } },
    };
    assert.deepEqual(errorsOf(() => validateConfigDocument({ hosts: hostMap, apps }, OPTS)), [
      'apps.blog.proxy: route port 80 host "*.example.com" covers app "web"\'s route (port 80 host "app.example.com") on host h2',
    ]);
  });

  test('a route colliding with several apps names each of them', () => {
    const apps = {
      web: { image: 'web', hosts: ['h1'], proxy: { host: 'app.example.com' } },
      api: { image: 'api', hosts: ['h2'], proxy: { host: 'api.example.com', path_prefix: '/v1' } },
      blog: { image: 'blog', hosts: ['h1', 'h2'], proxy: { host: '*.example.com' } },
    };
    assert.deepEqual(errorsOf(() => validateConfigDocument({ hosts: hostMap, apps }, OPTS)), [
      'apps.blog.proxy: route port 80 host "*.example.com" covers app "web"\'s route (port 80 host "app.example.com") on host h1',
      'apps.blog.proxy: route port 80 host "*.example.com" covers app "api"\'s route (port 80 host "api.example.com" path "/v1") on host h2',
    ]);
  });

  test('a spec stored before path_prefix existed (no pathPrefix) routes every path', () => {
    const stored = { ...WEB, proxy: { port: 80, host: 'app.example.com', drainTimeoutMs: 30_000 } };
    const api = validateAppDocument('api', { image: 'api', hosts: ['h1'], proxy: { host: 'app.example.com', path_prefix: '/api' } }, ['h1']);
    assert.deepEqual(routeConflicts(api, [stored]), [
      'route port 80 host "app.example.com" path "/api" is inside app "web"\'s route (port 80 host "app.example.com" any path) on host h1',
    ]);
  });

  test('an app with a bad route host gets only that issue, not a made-up conflict', () => {
    const apps = {
      web: { image: 'web', hosts: ['h1'], proxy: { host: 'app.example.com' } },
      blog: { image: 'blog', hosts: ['h1'], proxy: { port: 80, host: 'https://blog.example.com' } },
    };
    assert.deepEqual(errorsOf(() => validateConfigDocument({ hosts: hostMap, apps }, OPTS)), [
      'apps.blog.proxy.host: expected a host name like "app.example.com" or "*.example.com", got "https://blog.example.com" (no scheme: the host name only)',
    ]);
  });
});

test('all problems in a document are reported at once, in document order', () => {
  const yaml = `
hosts:
  h1: { address: 10.77.0.11, port: 0 }
apps:
  web:
    image: web
    hosts: [h1, h9]
    healthcheck: { interval: fast, timeout: 1 }
    rollout: { parallelism: 0, on_failure: maybe }
    env: { N: 1 }
    bogus: true
controller: { resync_interval: soon }
`;
  assert.deepEqual(configErrors(yaml), [
    'hosts.h1.port: expected an integer from 1 to 65535, got 0',
    'hosts.h1: host_key or known_hosts is required: berth never accepts an unverified host key',
    'apps.web.bogus: unknown key',
    'apps.web.hosts[1]: unknown host "h9" (known: h1)',
    'apps.web.healthcheck.interval: expected a duration like "5s", got "fast"',
    'apps.web.healthcheck.timeout: expected a duration like "5s", got 1 (durations need a unit: ms, s, m or h)',
    'apps.web.rollout.parallelism: expected a positive integer or a percentage like "30%", got 0',
    'apps.web.rollout.on_failure: expected one of rollback, pause, continue, got "maybe"',
    'apps.web.env.N: expected a string, got 1 (quote it: "1")',
    'controller.resync_interval: expected a duration like "5s", got "soon"',
  ]);
});

test('the ConfigError message lists every issue, one per line', () => {
  const err = (() => {
    try {
      validateConfigDocument(parseYaml('bogus: 1\napi: { listen: x }\n'), OPTS);
    } catch (e) {
      return e;
    }
    return null;
  })();
  assert.ok(err instanceof ConfigError);
  assert.equal(err.code, 'CONFIG_INVALID');
  assert.equal(err.message, 'bogus: unknown key\napi.listen: expected host:port like "127.0.0.1:7373", got "x"');
});

const FULL_EXAMPLE = `
hosts:
  h1: { address: 10.77.0.11, port: 22, user: root, ssh_key: ~/.ssh/id_ed25519, host_key: "${FP}", known_hosts: /path, docker_socket: /var/run/docker.sock, state_dir: /var/lib/berth }
  h2: { address: 10.77.0.12, known_hosts: keys/known_hosts }
  h3: { address: h3.internal, host_key: "${FP}" }
  local: { local: true, docker_socket: /var/run/docker.sock }
proxy: { image: caddy:2 }
acme: { directory: "https://acme.internal/dir", email: ops@example.com, renew_before: 20d, ca_certificate: keys/acme-ca.pem }
api: { listen: 127.0.0.1:7373, token: "s3cret-token-0123456789abcdefghijkl", open_reads: false }
controller: { resync_interval: 10s }
registries:
  10.77.0.1:5000: { username: ci-bot, password: REGISTRY_PASSWORD }
apps:
  web:
    image: 10.77.0.1:5000/web          # repository, no tag
    hosts: [h1, h2, h3]
    port: 3000
    healthcheck: { path: /health, port: 3000, interval: 5s, timeout: 2s, max_attempts: 10, min_healthy: 0s }
    rollout: { parallelism: 1, delay: 10s, on_failure: rollback, max_failure_ratio: 0.34, progress_deadline: 10m }   # parallelism: count or "50%"
    hooks: { pre_deploy: ["bin/rails db:migrate"], post_deploy: [], timeout: 5m }
    retain_containers: 5
    stop_timeout: 10s
    proxy: { port: 80, host: app.example.com, drain_timeout: 30s, tls: true }
    env: { RAILS_ENV: production }
    secrets: [DATABASE_URL]
`;

const WEB: AppSpec = {
  name: 'web',
  image: '10.77.0.1:5000/web',
  hosts: ['h1', 'h2', 'h3'],
  port: 3000,
  healthcheck: { path: '/health', port: 3000, intervalMs: 5_000, timeoutMs: 2_000, maxAttempts: 10, minHealthyMs: 0 },
  rollout: {
    parallelism: { kind: 'count', value: 1 },
    delayMs: 10_000,
    onFailure: 'rollback',
    maxFailureRatio: 0.34,
    progressDeadlineMs: 600_000,
  },
  hooks: { preDeploy: ['bin/rails db:migrate'], postDeploy: [], timeoutMs: 300_000 },
  retainContainers: 5,
  stopTimeoutMs: 10_000,
  proxy: { port: 80, host: 'app.example.com', pathPrefix: null, drainTimeoutMs: 30_000, tls: { source: 'acme' } },
  env: { RAILS_ENV: 'production' },
  secrets: ['DATABASE_URL'],
};

test('the full example parses to the expected config', () => {
  const config = validateConfigDocument(parseYaml(FULL_EXAMPLE), OPTS);
  const expected: BerthConfig = {
    allowHostAccess: false,
    hosts: {
      h1: {
        name: 'h1',
        local: false,
        address: '10.77.0.11',
        sshPort: 22,
        user: 'root',
        sshKeyPath: '/home/op/.ssh/id_ed25519',
        hostKey: FP,
        knownHostsPath: '/path',
        dockerSocket: '/var/run/docker.sock',
        stateDir: '/var/lib/berth',
      },
      h2: {
        name: 'h2',
        local: false,
        address: '10.77.0.12',
        sshPort: 22,
        user: 'root',
        sshKeyPath: null,
        hostKey: null,
        knownHostsPath: '/etc/berth/keys/known_hosts',
        dockerSocket: '/var/run/docker.sock',
        stateDir: '/var/lib/berth',
      },
      h3: {
        name: 'h3',
        local: false,
        address: 'h3.internal',
        sshPort: 22,
        user: 'root',
        sshKeyPath: null,
        hostKey: FP,
        knownHostsPath: null,
        dockerSocket: '/var/run/docker.sock',
        stateDir: '/var/lib/berth',
      },
      local: {
        name: 'local',
        local: true,
        address: null,
        sshPort: 22,
        user: 'root',
        sshKeyPath: null,
        hostKey: null,
        knownHostsPath: null,
        dockerSocket: '/var/run/docker.sock',
        stateDir: '/var/lib/berth',
      },
    },
    proxy: { image: 'caddy:2' },
    acme: { directory: 'https://acme.internal/dir', email: 'ops@example.com', renewBeforeMs: 20 * 86_400_000, caCertificate: '/etc/berth/keys/acme-ca.pem' },
    apps: { web: WEB },
    api: { listen: '127.0.0.1:7373', token: 's3cret-token-0123456789abcdefghijkl', openReads: false },
    controller: { resyncIntervalMs: 10_000, leaseMs: 10_000 },
    registries: { '10.77.0.1:5000': { username: 'ci-bot', password: 'REGISTRY_PASSWORD' } },
  };
  assert.deepEqual(config, expected);
});

describe('defaults', () => {
  test('an empty document is an empty config with defaults', () => {
    for (const doc of [null, undefined, {}]) {
      assert.deepEqual(validateConfigDocument(doc, OPTS), {
        allowHostAccess: false,
        hosts: {},
        proxy: { image: 'haproxy:2.6' },
        acme: { directory: 'https://acme-v02.api.letsencrypt.org/directory', email: null, renewBeforeMs: 30 * 86_400_000, caCertificate: null },
        apps: {},
        api: { listen: '127.0.0.1:7373', token: null, openReads: false },
        controller: { resyncIntervalMs: 10_000, leaseMs: 10_000 },
        registries: {},
      });
    }
  });

  test('a minimal app gets the seed defaults; healthcheck.port follows the app port', () => {
    const spec = validateAppDocument('api', { image: 'registry.local/api', hosts: ['h1'], port: 8080 }, ['h1']);
    assert.deepEqual(spec, {
      name: 'api',
      image: 'registry.local/api',
      hosts: ['h1'],
      port: 8080,
      healthcheck: { ...SEED_DEFAULTS.healthcheck, port: 8080 },
      rollout: { ...SEED_DEFAULTS.rollout },
      hooks: { preDeploy: [], postDeploy: [], timeoutMs: 300_000 },
      retainContainers: 5,
      stopTimeoutMs: 10_000,
      proxy: null,
      env: {},
      secrets: [],
    });
  });

  test('without a port the app and its health check use 3000', () => {
    const spec = validateAppDocument('api', { image: 'api', hosts: ['h1'] }, ['h1']);
    assert.equal(spec.port, 3000);
    assert.equal(spec.healthcheck.port, 3000);
  });

  test('partial sections keep the defaults of the fields not given', () => {
    const spec = validateAppDocument(
      'api',
      { image: 'api', hosts: ['h1'], healthcheck: { path: '/up' }, rollout: { parallelism: '50%' }, proxy: { host: '*.example.com' } },
      ['h1'],
    );
    assert.deepEqual(spec.healthcheck, { ...SEED_DEFAULTS.healthcheck, path: '/up' });
    assert.deepEqual(spec.rollout, { ...SEED_DEFAULTS.rollout, parallelism: { kind: 'percent', value: 50 } });
    assert.deepEqual(spec.proxy, { port: null, host: '*.example.com', pathPrefix: null, drainTimeoutMs: 30_000 });
  });

  test('null fields count as absent', () => {
    const spec = validateAppDocument('api', { image: 'api', hosts: ['h1'], port: null, proxy: null, env: null }, ['h1']);
    assert.equal(spec.port, 3000);
    assert.equal(spec.proxy, null);
    assert.deepEqual(spec.env, {});
  });

  test('host defaults: port 22, user root, docker socket and state dir; ~ expands', () => {
    const config = validateConfigDocument(
      { hosts: { h1: { address: '10.0.0.1', known_hosts: '~/.ssh/known_hosts', ssh_key: '~' } } },
      OPTS,
    );
    assert.deepEqual(config.hosts.h1, {
      name: 'h1',
      local: false,
      address: '10.0.0.1',
      sshPort: 22,
      user: 'root',
      sshKeyPath: '/home/op',
      hostKey: null,
      knownHostsPath: '/home/op/.ssh/known_hosts',
      dockerSocket: '/var/run/docker.sock',
      stateDir: '/var/lib/berth',
    });
  });
});

describe('app documents from the API', () => {
  const known = ['h1', 'h2', 'h3'];

  test('issues are located under the given prefix', () => {
    const errors = errorsOf(() =>
      validateAppDocument('web', { image: 'web', hosts: ['h9'], healthcheck: { interval: 'fast' }, extra: 1 }, known, 'body'),
    );
    assert.deepEqual(errors, [
      'body.extra: unknown key',
      'body.hosts[0]: unknown host "h9" (known: h1, h2, h3)',
      'body.healthcheck.interval: expected a duration like "5s", got "fast"',
    ]);
  });

  test('a body that is not an object', () => {
    assert.deepEqual(errorsOf(() => validateAppDocument('web', [], known, 'body')), ['body: expected a map, got a list']);
    assert.deepEqual(errorsOf(() => validateAppDocument('web', 'x', known, 'body')), ['body: expected a map, got "x"']);
  });

  test('with no hosts known, the message says so', () => {
    assert.deepEqual(errorsOf(() => validateAppDocument('web', { image: 'web', hosts: ['h1'] }, [], 'body')), [
      'body.hosts[0]: unknown host "h1" (known: none)',
    ]);
  });

  test('the default prefix is apps.<name>', () => {
    assert.deepEqual(errorsOf(() => validateAppDocument('web', { hosts: ['h1'] }, known)), ['apps.web.image: required']);
  });

  test('an env key named __proto__ stays a plain variable', () => {
    const spec = validateAppDocument('web', JSON.parse('{"image":"web","hosts":["h1"],"env":{"__proto__":"x"}}'), known);
    assert.deepEqual(Object.entries(spec.env), [['__proto__', 'x']]);
  });

  test('proxy host is lowercased, path_prefix loses its trailing "/" (but "/" stays)', () => {
    const route = (proxy: Record<string, unknown>) => validateAppDocument('web', { image: 'web', hosts: ['h1'], proxy }, known).proxy;
    assert.deepEqual(route({ host: '*.Example.COM', path_prefix: '/api/v2/' }), { port: null, host: '*.example.com', pathPrefix: '/api/v2', drainTimeoutMs: 30_000 });
    assert.equal(route({ host: 'app.example.com', path_prefix: '/' })?.pathPrefix, '/');
    assert.equal(route({ port: 8080, path_prefix: '//' })?.pathPrefix, '/');
    assert.equal(route({ port: 8080, path_prefix: "/a-b_c.d~e/x:y@z!$&'()+,;=" })?.pathPrefix, "/a-b_c.d~e/x:y@z!$&'()+,;=");
  });

  test('appDocument is the inverse of validateAppDocument', () => {
    const doc = appDocument(WEB);
    assert.equal(doc.healthcheck.interval, '5s');
    assert.deepEqual(validateAppDocument('web', JSON.parse(JSON.stringify(doc)), known), WEB);
    const pct: AppSpec = { ...WEB, rollout: { ...WEB.rollout, parallelism: { kind: 'percent', value: 30 } }, proxy: null };
    assert.deepEqual(validateAppDocument('web', appDocument(pct), known), pct);
    const prefixed: AppSpec = { ...WEB, proxy: { port: null, host: '*.example.com', pathPrefix: '/api', drainTimeoutMs: 5_000 } };
    assert.deepEqual(appDocument(prefixed).proxy, { host: '*.example.com', path_prefix: '/api', drain_timeout: '5s' });
    assert.deepEqual(validateAppDocument('web', appDocument(prefixed), known), prefixed);
    // history_limit: only in a spec (and its document) that sets it, so older specs read as before.
    assert.equal('historyLimit' in validateAppDocument('web', { image: 'web', hosts: ['h1'] }, known), false);
    const limited: AppSpec = { ...WEB, historyLimit: 20 };
    assert.equal(appDocument(limited).history_limit, 20);
    assert.equal('history_limit' in appDocument(WEB), false);
    assert.deepEqual(validateAppDocument('web', appDocument(limited), known), limited);
    // rollout.strategy: the document always says it; the spec holds only recreate, so an app
    // that says start-first is the same spec as one from before the key existed.
    assert.equal(doc.rollout.strategy, 'start-first');
    const strategy = (value: string) => validateAppDocument('web', { image: 'web', hosts: ['h1'], rollout: { strategy: value } }, known).rollout.strategy;
    assert.equal(strategy('start-first'), undefined);
    assert.equal(strategy('recreate'), 'recreate');
    const recreate: AppSpec = { ...WEB, rollout: { ...WEB.rollout, strategy: 'recreate' } };
    assert.equal(appDocument(recreate).rollout.strategy, 'recreate');
    assert.deepEqual(validateAppDocument('web', JSON.parse(JSON.stringify(appDocument(recreate))), known), recreate);
    // rollout.preboot: likewise only `true` is in a spec; the document always says it.
    assert.equal(doc.rollout.preboot, false);
    const preboot = (value: boolean) => validateAppDocument('web', { image: 'web', hosts: ['h1'], rollout: { preboot: value } }, known).rollout.preboot;
    assert.equal(preboot(false), undefined);
    assert.equal(preboot(true), true);
    const early: AppSpec = { ...WEB, rollout: { ...WEB.rollout, preboot: true } };
    assert.equal(appDocument(early).rollout.preboot, true);
    assert.deepEqual(validateAppDocument('web', JSON.parse(JSON.stringify(appDocument(early))), known), early);
  });
});

describe('loadConfig', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-config-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  test('a YAML syntax error in a deploy-style file reports its line and column', () => {
    const p = file('broken.yml', `hosts:\n  h1: { address: 10.77.0.11, host_key: "${FP}" }\napps:\n  web:\n    image: web\n    hosts: [h1, h2\n    port: 3000\n`);
    const errors = errorsOf(() => loadConfig(p, OPTS));
    assert.ok(errors.length >= 1);
    for (const e of errors) assert.match(e, /^\(yaml\): line \d+, column \d+: \S/);
    assert.match(errors[0] ?? '', /^\(yaml\): line [67], column \d+: /);
  });

  test('a repeated key is a YAML error, not last-one-wins', () => {
    const p = file('dup.yml', 'api:\n  listen: 127.0.0.1:1\n  listen: 127.0.0.1:2\n');
    assert.deepEqual(errorsOf(() => loadConfig(p, OPTS)), ['(yaml): line 3, column 3: Map keys must be unique']);
  });

  test('an unresolved tag is an error', () => {
    const p = file('tag.yml', 'api:\n  token: !vault secret\n');
    assert.deepEqual(errorsOf(() => loadConfig(p, OPTS)), ['(yaml): line 2, column 10: Unresolved tag: !vault']);
  });

  test('an alias to an unknown anchor is a YAML error', () => {
    assert.deepEqual(errorsOf(() => parseYaml('apps: *nope\n')), [
      '(yaml): Unresolved alias (the anchor must be set before the alias): nope',
    ]);
  });

  test('alias bombs are refused', () => {
    const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 8; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    const errors = errorsOf(() => parseYaml(bomb.join('\n')));
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? '', /^\(yaml\): .*alias/i);
  });

  test('a missing file names the path', () => {
    const p = join(dir, 'nope.yml');
    assert.deepEqual(errorsOf(() => loadConfig(p)), [`(file): cannot read config file ${p}: no such file`]);
  });

  test('an empty file is an empty config', () => {
    assert.deepEqual(loadConfig(file('empty.yml', ''), OPTS).apps, {});
    assert.deepEqual(loadConfig(file('comments.yml', '# nothing yet\n'), OPTS).hosts, {});
  });

  test('the full example loads; relative local paths are taken from the file\'s directory', () => {
    const config = loadConfig(file('berth.yml', FULL_EXAMPLE), { homeDir: '/home/op' });
    assert.deepEqual(config.apps.web, WEB);
    assert.equal(config.hosts.h2?.knownHostsPath, join(dir, 'keys/known_hosts'));
  });

  test('merge keys share blocks between apps', () => {
    const yaml = `${HOSTS}common: &common\n  image: shared\n  hosts: [h1]\n  env: { A: "1" }\napps:\n  web: { <<: *common, port: 8080 }\n`;
    // `common` is not a berth key, so it is reported; the merge itself worked.
    assert.deepEqual(configErrors(yaml), ['common: unknown key']);
    const ok = `${HOSTS}apps:\n  web: &w { image: shared, hosts: [h1], env: { A: "1" } }\n  api: { <<: *w, port: 8080 }\n`;
    const config = validateConfigDocument(parseYaml(ok), OPTS);
    assert.equal(config.apps.api?.image, 'shared');
    assert.equal(config.apps.api?.port, 8080);
    assert.deepEqual(config.apps.api?.env, { A: '1' });
  });
});

/** Tokens of the minimum length (32 bytes): the applyEnv cases are about precedence, not length. */
const FILE_TOKEN = 'from-file-0123456789abcdefghijklm';
const ENV_TOKEN = 'from-env-0123456789abcdefghijklmn';

describe('applyEnv', () => {
  const base = validateConfigDocument({ api: { token: FILE_TOKEN } }, OPTS);

  test('BERTH_TOKEN and BERTH_LISTEN override the file', () => {
    const c = applyEnv(base, { BERTH_TOKEN: ENV_TOKEN, BERTH_LISTEN: '0.0.0.0:8000' });
    assert.deepEqual(c.api, { listen: '0.0.0.0:8000', token: ENV_TOKEN, openReads: false });
    assert.equal(base.api.token, FILE_TOKEN, 'the input config is not modified');
  });

  test('unset or empty variables leave the file values', () => {
    assert.deepEqual(applyEnv(base, {}).api, base.api);
    assert.deepEqual(applyEnv(base, { BERTH_TOKEN: '', BERTH_LISTEN: '' }).api, base.api);
  });

  test('IPv6 listen addresses are bracketed', () => {
    assert.equal(applyEnv(base, { BERTH_LISTEN: '[::1]:7373' }).api.listen, '[::1]:7373');
  });

  test('malformed values are errors naming the variable', () => {
    assert.deepEqual(errorsOf(() => applyEnv(base, { BERTH_LISTEN: 'localhost', BERTH_TOKEN: 'two words' })), [
      'BERTH_TOKEN: expected a non-empty string of printable characters without spaces (value not shown)',
      'BERTH_LISTEN: expected host:port like "127.0.0.1:7373", got "localhost"',
    ]);
  });
});

describe('API token length', () => {
  const SHORT = 'short-but-printable-token-31byte'.slice(0, 31);
  const TOO_SHORT = `too short: 31 bytes, at least 32 are needed (value not shown); make one with: openssl rand -base64 32`;

  test('an api.token shorter than 32 bytes is refused, naming the key and how to make one', () => {
    const errors = configErrors(`api: { token: "${SHORT}" }\n`);
    assert.deepEqual(errors, [`api.token: ${TOO_SHORT}`]);
    assert.ok(!errors.join('\n').includes(SHORT), 'the value is never echoed');
  });

  test('a BERTH_TOKEN shorter than 32 bytes is refused, naming the variable', () => {
    const base = validateConfigDocument(null, OPTS);
    const errors = errorsOf(() => applyEnv(base, { BERTH_TOKEN: SHORT }));
    assert.deepEqual(errors, [`BERTH_TOKEN: ${TOO_SHORT}`]);
    // A long token in the file does not excuse a short one in the environment (it would win).
    assert.deepEqual(errorsOf(() => applyEnv(validateConfigDocument({ api: { token: 'x'.repeat(40) } }, OPTS), { BERTH_TOKEN: 'abc' })), [
      `BERTH_TOKEN: ${TOO_SHORT.replace('31 bytes', '3 bytes')}`,
    ]);
  });

  test('32 bytes is enough; `openssl rand -base64 32` output (44 characters) is accepted', () => {
    const exact = 'a'.repeat(32);
    assert.equal(validateConfigDocument({ api: { token: exact } }, OPTS).api.token, exact);
    const openssl = 'q3Jb8m1nZt0xk2VfR7yWcL9pHd4sE6gA5uNwTiKoYbM=';
    assert.equal(openssl.length, 44);
    assert.equal(applyEnv(validateConfigDocument(null, OPTS), { BERTH_TOKEN: openssl }).api.token, openssl);
  });
});

describe('API exposure: the listen address, the clear-text warning and open_reads', () => {
  const api = (listen: string, openReads = false) => ({ listen, token: null, openReads });

  test('loopback listen hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', 'localhost', 'LOCALHOST']) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', '::ffff:10.0.0.1', 'fd00::1', 'berth.internal', 'localhost.example.com']) assert.equal(isLoopbackHost(h), false, h);
  });

  test('on loopback: no warning, open_reads as configured', () => {
    for (const listen of ['127.0.0.1:7373', '[::1]:7373', 'localhost:7373']) {
      assert.deepEqual(apiExposure(api(listen, true)), { loopback: true, openReads: true, warnings: [] }, listen);
      assert.deepEqual(apiExposure(api(listen)), { loopback: true, openReads: false, warnings: [] }, listen);
    }
  });

  test('elsewhere: a clear-text warning with the fix; open_reads ignored with a second warning', () => {
    for (const listen of ['0.0.0.0:7373', '[::]:7373', '10.77.0.1:7373', 'berth.internal:7373']) {
      const plain = apiExposure(api(listen));
      assert.equal(plain.loopback, false);
      assert.equal(plain.openReads, false);
      assert.equal(plain.warnings.length, 1);
      assert.match(plain.warnings[0]!, new RegExp(`^the API listens on ${listen.replace(/[[\].]/g, '\\$&')}, not a loopback address, without TLS: requests and the bearer token travel in clear text`));
      assert.match(plain.warnings[0]!, /bind it to 127\.0\.0\.1 .* put a TLS-terminating reverse proxy in front/);
      const open = apiExposure(api(listen, true));
      assert.equal(open.openReads, false, 'open_reads is not honoured');
      assert.deepEqual(open.warnings.slice(0, 1), plain.warnings);
      assert.match(open.warnings[1] ?? '', /^api\.open_reads is ignored: it is honoured only on a loopback listener/);
    }
  });
});
