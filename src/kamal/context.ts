/**
 * What every part of the Kamal mapping shares: the notes it writes (one per Kamal key it
 * cannot carry over, with why), the ERB tags, YAML comments for the output, and the small
 * readers that turn Kamal's loosely typed values (`wait: 10`, `port: "2222"`) into berth's.
 */
import { Issues, isMap, keyPath } from '../config/reader.js';
import { erbIn, unmaskErb, type ErbTag } from './erb.js';

/** A berth document under construction (snake_case keys, as berth.yml is written). */
export type Doc = Record<string, unknown>;

/** A comment on a key of the output (`['apps', 'web', 'hosts']`), as an operator reading berth.yml needs it. */
export interface OutputComment {
  at: string[];
  text: string;
}

export class MapContext {
  /** `kamal.key.path: why`, in the order met. */
  readonly notes = new Issues();
  readonly comments: OutputComment[] = [];
  /** ERB tags a note has named; the rest are reported by file and line at the end (import.ts). */
  readonly erbNoted = new Set<ErbTag>();

  constructor(readonly erb: readonly ErbTag[]) {}

  /** A note once: settings shared by several roles are met once per role. */
  note(path: string, message: string): void {
    if (!this.notes.list.some((n) => n.path === path && n.message === message)) this.notes.add(path, message);
  }

  comment(at: string[], text: string): void {
    this.comments.push({ at, text });
  }

  /** Reports the ERB of `value` at `path`; true when it had any (the value is then a placeholder). */
  erbAt(value: unknown, path: string, outcome: string): boolean {
    const tags = erbIn(value, this.erb);
    for (const tag of tags) {
      this.erbNoted.add(tag);
      this.note(path, `ERB ${tag.source} (${tag.file}:${tag.line}) is not evaluated: ${outcome}`);
    }
    return tags.length > 0;
  }

  /**
   * Free text (an env value, a label, a command): a scalar as a string. ERB in it stays
   * written as it was, a placeholder that is reported here and that the operator replaces.
   */
  text(value: unknown, path: string): string | undefined {
    if (typeof value === 'number' || typeof value === 'boolean') return String(value);
    if (typeof value !== 'string') return undefined;
    this.erbAt(value, path, 'left as written, a placeholder to replace');
    return unmaskErb(value, this.erb);
  }

  /** A value berth checks (a name, a path, an address): with ERB in it there is nothing to carry over. */
  plain(value: unknown, path: string): string | undefined {
    if (typeof value === 'number') return String(value);
    if (typeof value !== 'string') return undefined;
    return this.erbAt(value, path, 'left out') ? undefined : value;
  }

  /** Kamal's seconds (`wait: 10`, `"10"`) or a Docker duration (`10s`) as a berth duration. */
  seconds(value: unknown, path: string): string | undefined {
    const s = this.plain(value, path);
    if (s === undefined) return undefined;
    if (/^\d+(\.\d+)?$/.test(s)) return Number.isInteger(Number(s)) ? `${Number(s)}s` : `${Math.round(Number(s) * 1000)}ms`;
    if (/^(\d+(ms|s|m|h))+$/.test(s)) return s;
    this.note(path, `expected a number of seconds, got ${JSON.stringify(s)}: left out`);
    return undefined;
  }

  /** A whole number (`port: "2222"`, `max_attempts: 10`), else undefined (noted). */
  integer(value: unknown, path: string): number | undefined {
    const s = this.plain(value, path);
    if (s === undefined) return undefined;
    if (/^\d+$/.test(s)) return Number(s);
    this.note(path, `expected a whole number, got ${JSON.stringify(s)}: left out`);
    return undefined;
  }

  /**
   * Every key of a Kamal map section that `handled` does not list is noted with `why(key)`;
   * `path` is the section's, or says where each key came from (a role's own or the root's).
   */
  rest(section: unknown, path: string | ((key: string) => string), handled: readonly string[], why: (key: string) => string): void {
    if (!isMap(section)) return;
    const at = typeof path === 'string' ? (key: string) => keyPath(path, key) : path;
    for (const key of Object.keys(section)) if (!handled.includes(key)) this.note(at(key), why(key));
  }
}

/** A Kamal map section, or an empty one (absent, or not a map: Kamal would have refused it). */
export function section(value: unknown): Doc {
  return isMap(value) ? value : {};
}

/** `[A, B]` or `A` as a list of strings (Kamal accepts both in many places). */
export function list(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}
