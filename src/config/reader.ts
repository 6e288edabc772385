/**
 * The small toolkit the validators are written with. A validator walks an
 * unknown document, records every problem it meets (it never stops at the
 * first) and always returns a value — a fallback where the input was bad — so
 * later checks still run. The caller throws if any issue was recorded.
 *
 * Messages read `<path>: <message>`, mostly `expected <what>, got <value>`.
 * Paths: `apps.web.healthcheck.interval`, `apps.web.hosts[2]`, and keys that
 * are not identifier-like are quoted: `hosts["h1.example.com"].address`.
 */
import type { ConfigIssue } from '../domain/errors.js';

export class Issues {
  readonly list: ConfigIssue[] = [];

  add(path: string, message: string): void {
    this.list.push({ path, message });
  }

  get empty(): boolean {
    return this.list.length === 0;
  }
}

/** Reads (and checks) one value. Returns undefined, after recording an issue, when the value is bad. */
export type Read<T> = (value: unknown, path: string, issues: Issues) => T | undefined;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

export function keyPath(path: string, key: string): string {
  if (!PLAIN_KEY.test(key)) return `${path}[${JSON.stringify(key)}]`;
  return path === '' ? key : `${path}.${key}`;
}

export function indexPath(path: string, index: number): string {
  return `${path}[${index}]`;
}

/** How a bad value is shown in a message: strings quoted (and cut short), lists and maps by kind. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a map';
  return typeof value;
}

export function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A Read from a predicate-style parser: `parse` returns undefined for a bad value. */
export function check<T>(expected: string, parse: (value: unknown) => T | undefined): Read<T> {
  return (value, path, issues) => {
    const out = parse(value);
    if (out === undefined) issues.add(path, `expected ${expected}, got ${describe(value)}`);
    return out;
  };
}

/**
 * The fields of one map node. Created by `readMap`, which has already reported
 * keys outside the allowed set. Absent and `null` fields are the same thing
 * (YAML's `port:` with nothing after it is null): the default applies.
 */
export class Fields {
  constructor(
    readonly path: string,
    private readonly obj: Record<string, unknown>,
    readonly issues: Issues,
  ) {}

  at(key: string): string {
    return keyPath(this.path, key);
  }

  has(key: string): boolean {
    const v = Object.hasOwn(this.obj, key) ? this.obj[key] : undefined;
    return v !== undefined && v !== null;
  }

  raw(key: string): unknown {
    return this.has(key) ? this.obj[key] : undefined;
  }

  /** The field read with `read`, or `fallback` when absent or bad. */
  get<T>(key: string, read: Read<T>, fallback: T): T {
    if (!this.has(key)) return fallback;
    return read(this.obj[key], this.at(key), this.issues) ?? fallback;
  }

  /** Like `get`, but absence is an issue (`<path>: required`). */
  need<T>(key: string, read: Read<T>, fallback: T): T {
    if (!this.has(key)) {
      this.issues.add(this.at(key), 'required');
      return fallback;
    }
    return read(this.obj[key], this.at(key), this.issues) ?? fallback;
  }
}

/**
 * Opens a map node. `null`/absent reads as an empty map (so `apps: { web: }`
 * reports web's missing required fields). Unknown keys are issues everywhere,
 * with a hint when the key looks like a misspelling of an allowed one.
 * A non-map is reported once and then read as an empty map whose own issues go
 * to a scratch list, so callers get defaults without a row of "required" echoes.
 */
export function readMap(value: unknown, path: string, issues: Issues, keys: readonly string[]): Fields {
  if (value === undefined || value === null) return new Fields(path, {}, issues);
  if (!isMap(value)) {
    issues.add(path || '(root)', `expected a map, got ${describe(value)}`);
    return new Fields(path, {}, new Issues());
  }
  for (const key of Object.keys(value)) {
    if (keys.includes(key)) continue;
    const hint = closest(key, keys);
    issues.add(keyPath(path, key), hint ? `unknown key (did you mean ${hint}?)` : 'unknown key');
  }
  return new Fields(path, value, issues);
}

/** Entries of a map whose keys are user-chosen names (apps, hosts, env). */
export function readEntries(value: unknown, path: string, issues: Issues): Array<[string, unknown]> {
  if (value === undefined || value === null) return [];
  if (!isMap(value)) {
    issues.add(path || '(root)', `expected a map, got ${describe(value)}`);
    return [];
  }
  return Object.entries(value);
}

/** A list whose items are each read with `item`; bad items are dropped from the result. */
export function listOf<T>(item: Read<T>, what = 'a list'): Read<T[]> {
  return (value, path, issues) => {
    if (!Array.isArray(value)) {
      issues.add(path, `expected ${what}, got ${describe(value)}`);
      return undefined;
    }
    const out: T[] = [];
    value.forEach((v: unknown, i) => {
      const r = item(v, indexPath(path, i), issues);
      if (r !== undefined) out.push(r);
    });
    return out;
  };
}

export const readBoolean: Read<boolean> = check('true or false', (v) => (typeof v === 'boolean' ? v : undefined));

export function readInteger(min: number, max: number = Number.MAX_SAFE_INTEGER): Read<number> {
  const expected = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
  return check(expected, (v) => (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? (v as number) : undefined));
}

export const readPort: Read<number> = readInteger(1, 65535);

export function readEnum<T extends string>(values: readonly T[]): Read<T> {
  return check(`one of ${values.join(', ')}`, (v) => (values.includes(v as T) ? (v as T) : undefined));
}

/** Edit distance small enough to be a typo (or a camelCase spelling of a snake_case key). */
function closest(key: string, candidates: readonly string[]): string | undefined {
  const lower = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c === lower.replace(/-/g, '_') ? 0 : levenshtein(key, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= 2 && bestDistance < key.length / 2 ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
