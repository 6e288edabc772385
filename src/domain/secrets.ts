/**
 * Rules about app secrets that more than one layer applies: which names an app may
 * not take as secrets, and how secret values are cut out of text that
 * berth stores or answers with (hook and exec output, step errors, events).
 * Pure: no I/O, no environment access; callers pass the values.
 */

/** berth's own settings (its API token among them) live under this prefix: never an app's secret. */
export const RESERVED_SECRET_PREFIX = 'BERTH_';

/** True for a name an app may not list under `secrets` (any case: `berth_token` too). */
export function isReservedSecretName(name: string): boolean {
  return name.toUpperCase().startsWith(RESERVED_SECRET_PREFIX);
}

/** Why a reserved name is refused (config validation and the executor say the same). */
export function reservedSecretMessage(name: string): string {
  return `"${name}" is reserved: names starting with ${RESERVED_SECRET_PREFIX} (any case) are berth's own settings, its API token among them, and never go to apps`;
}

/**
 * Values shorter than this are not redacted: cutting every "ab" or "on" out of a
 * hook's output would shred it, and a value that short is guessable anyway. Such a
 * value is still passed to the container; it is only not looked for in output.
 */
export const MIN_REDACTED_LENGTH = 4;

/**
 * A tail (the last KiB of output) can start in the middle of a secret. A start of the
 * text that equals the END of a value is redacted when at least this long: shorter
 * leftovers reveal little, and a lower bound would redact ordinary text (`/app`) that
 * happens to end a value.
 */
export const MIN_REDACTED_PARTIAL_LENGTH = 8;

export interface RedactOptions {
  /** The text is a tail whose start may have cut a value: redact a leading end of a value too. */
  tail?: boolean;
}

export type Redactor = (text: string, opts?: RedactOptions) => string;

interface Span {
  start: number;
  end: number;
  names: string[];
}

/**
 * The redactor of one app's secrets (name -> value; undefined = not set, skipped).
 * Every occurrence of every value of at least MIN_REDACTED_LENGTH characters becomes
 * `[redacted:NAME]`. Longer values first: a value inside a longer one (the password
 * in a URL) is covered by the longer one's marker; occurrences that only partly
 * overlap in the text become one marker naming both (`[redacted:A,B]`), so no part of
 * either is left; a value held by several names names them all. Replaces in one pass
 * over the original text, so a marker is never searched again.
 */
export function secretRedactor(secrets: Readonly<Record<string, string | undefined>>): Redactor {
  const namesByValue = new Map<string, string[]>();
  for (const [name, value] of Object.entries(secrets).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (value === undefined) continue;
    // A value of several lines (a PEM key) is also looked for line by line: container
    // logs are redacted one line at a time, and a tail may hold only some of its lines.
    const lines = value.includes('\n') ? value.split(/\r?\n/) : [];
    for (const v of [value, ...lines]) {
      if (v.length < MIN_REDACTED_LENGTH) continue;
      const names = namesByValue.get(v) ?? [];
      if (!names.includes(name)) namesByValue.set(v, [...names, name]);
    }
  }
  // Longest first: at one position the longer value wins, and its names come first in a marker.
  const values = [...namesByValue.entries()].sort(([a], [b]) => b.length - a.length);
  if (values.length === 0) return (text) => text;

  return (text, opts = {}) => {
    const spans: Span[] = [];
    for (const [value, names] of values) {
      for (let at = text.indexOf(value); at !== -1; at = text.indexOf(value, at + 1)) {
        spans.push({ start: at, end: at + value.length, names });
      }
      if (opts.tail) {
        // The longest proper end of the value that the text starts with.
        for (let k = Math.min(value.length - 1, text.length); k >= MIN_REDACTED_PARTIAL_LENGTH; k--) {
          if (text.startsWith(value.slice(value.length - k))) {
            spans.push({ start: 0, end: k, names });
            break;
          }
        }
      }
    }
    if (spans.length === 0) return text;
    spans.sort((a, b) => a.start - b.start || b.end - a.end);
    const merged: Span[] = [];
    for (const s of spans) {
      const last = merged[merged.length - 1];
      if (last && s.start < last.end) {
        // Inside the span already (a password within a URL): the longer value names it alone.
        if (s.end <= last.end) continue;
        last.end = s.end;
        for (const n of s.names) if (!last.names.includes(n)) last.names.push(n);
      } else {
        merged.push({ start: s.start, end: s.end, names: [...s.names] });
      }
    }
    let out = '';
    let from = 0;
    for (const s of merged) {
      out += `${text.slice(from, s.start)}[redacted:${s.names.join(',')}]`;
      from = s.end;
    }
    return out + text.slice(from);
  };
}

/** One-shot form of secretRedactor. */
export function redactSecrets(text: string, secrets: Readonly<Record<string, string | undefined>>, opts?: RedactOptions): string {
  return secretRedactor(secrets)(text, opts);
}
