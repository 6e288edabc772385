/**
 * The text of an app's secrets file (`<data dir>/secrets/<app>.env`, app-secrets.ts):
 * dotenv-like `NAME=value` lines, and exactly this much of dotenv (README, "Secrets"):
 *
 * - blank lines and lines whose first non-blank character is `#` are skipped;
 * - `NAME=value`, optionally `export NAME=value`; spaces around NAME and before the
 *   value are dropped; NAME is letters, digits and `_`, not starting with a digit;
 * - an unquoted value is the rest of the line with trailing blanks dropped, taken
 *   literally: `#`, `$`, quotes and backslashes inside it are part of the value
 *   (no inline comments, no `${VAR}` expansion: a password may hold any of them);
 * - `'...'` is literal; `"..."` turns `\n` into a newline and `\"`, `\\` into `"`, `\`
 *   (any other backslash stays). Either may span lines (a PEM certificate), ending at
 *   the first closing quote, after which only blanks may follow on that line;
 * - CRLF line ends and a leading byte order mark are accepted;
 * - a NAME set twice is an error (which one was meant?), as is any other line.
 *
 * Pure. A problem names the line and never quotes the file's text: a line that is not
 * `NAME=value` may well be a pasted value.
 */
import { isEnvName } from '../domain/naming.js';

export interface ParsedSecrets {
  /** name -> value, own properties only. */
  values: Record<string, string>;
  /** `line N: what is wrong`; when any, the file is not used at all. */
  problems: string[];
}

const EXPORT = /^export[ \t]+/;

export function parseSecretsFile(text: string): ParsedSecrets {
  const lines = text.replace(/^\uFEFF/, '').split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  const values = new Map<string, string>();
  const firstLine = new Map<string, number>();
  const problems: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    // Only the start: a quoted value keeps the blanks at the end of its first line.
    const line = lines[i]!.trimStart();
    if (line === '' || line.startsWith('#')) continue;
    const assignment = line.replace(EXPORT, '');
    const eq = assignment.indexOf('=');
    if (eq === -1) {
      problems.push(`line ${lineNo}: expected NAME=value`);
      continue;
    }
    const name = assignment.slice(0, eq).trim();
    if (!isEnvName(name)) {
      problems.push(`line ${lineNo}: expected a variable name before "=" (letters, digits and "_", not starting with a digit)`);
      continue;
    }
    const raw = assignment.slice(eq + 1).trimStart();
    let value: string;
    if (raw.startsWith('"') || raw.startsWith("'")) {
      const quoted = readQuoted(lines, i, raw);
      i = quoted.lastLine;
      if (quoted.problem) {
        problems.push(`line ${lineNo}: ${name}: ${quoted.problem}`);
        continue;
      }
      value = quoted.value;
    } else {
      value = raw.trimEnd();
    }
    const first = firstLine.get(name);
    if (first !== undefined) {
      problems.push(`line ${lineNo}: ${name} is set again (first on line ${first})`);
      continue;
    }
    firstLine.set(name, lineNo);
    values.set(name, value);
  }
  // fromEntries defines own properties: a NAME like `__proto__` stays plain data.
  return { values: Object.fromEntries(values), problems };
}

/** The quoted value that starts `raw` (on line `at`), possibly over the following lines. */
function readQuoted(lines: readonly string[], at: number, raw: string): { value: string; lastLine: number; problem?: string } {
  const quote = raw[0]!;
  let value = '';
  let text = raw.slice(1);
  for (let line = at; ; ) {
    for (let k = 0; k < text.length; k++) {
      const c = text[k]!;
      if (quote === '"' && c === '\\' && k + 1 < text.length) {
        const next = text[k + 1]!;
        value += next === 'n' ? '\n' : next === '"' || next === '\\' ? next : c + next;
        k++;
      } else if (c === quote) {
        const after = text.slice(k + 1).trim();
        return after === '' ? { value, lastLine: line } : { value, lastLine: line, problem: `text after the closing quote (line ${line + 1})` };
      } else {
        value += c;
      }
    }
    line++;
    if (line >= lines.length) return { value, lastLine: line - 1, problem: `no closing ${quote === '"' ? 'double' : 'single'} quote` };
    value += '\n';
    text = lines[line]!;
  }
}
