/**
 * Kamal renders its YAML files through ERB before parsing them. berth never runs that Ruby:
 * each tag is cut out before the YAML is parsed, an output tag (`<%= … %>`) leaving a token
 * in its place so the key it was in can still be named, and every tag is reported.
 */

/** One ERB tag of a Kamal file: where it was and its text, for the report. */
export interface ErbTag {
  file: string;
  line: number;
  /** The tag as written, `<%= ENV["DB_HOST"] %>`. */
  source: string;
  /** `<%= %>` puts a value into the YAML; `<% %>` is control flow (if, each) or a comment. */
  kind: 'output' | 'control';
}

/** Digits between two markers no YAML value or Kamal key contains. */
const TOKEN = /\u00abERB(\d+)\u00bb/g;
const tokenFor = (index: number): string => `\u00abERB${index}\u00bb`;

/** `<%%` is ERB's escape for a literal `<%`: it is no tag and stays as written. */
const TAG = /<%(?!%)([=#-]?)([\s\S]*?)-?%>/g;

/**
 * Replaces every ERB tag of `text` (appending them to `tags`, whose indices the tokens
 * carry): output tags by a token, control tags and comments by nothing, so a file with
 * `<% if … %>` is read with both branches. Lines and columns of the YAML do not move.
 */
export function maskErb(text: string, file: string, tags: ErbTag[]): string {
  return text.replace(TAG, (source: string, mark: string, _body: string, offset: number) => {
    const line = text.slice(0, offset).split('\n').length;
    const kind = mark === '=' ? 'output' : 'control';
    tags.push({ file, line, source: source.replace(/\s+/g, ' '), kind });
    // A multi-line tag keeps its newlines, so what follows stays on its own line.
    const newlines = source.replace(/[^\n]/g, '');
    return (kind === 'output' ? tokenFor(tags.length - 1) : '') + newlines;
  });
}

/** The tags a string value of the masked document came from (empty when it has none). */
export function erbIn(value: unknown, tags: readonly ErbTag[]): ErbTag[] {
  if (typeof value !== 'string') return [];
  return [...value.matchAll(TOKEN)].map((m) => tags[Number(m[1])]!);
}

/** A masked string with its tags written back as they were: the placeholder the operator sees. */
export function unmaskErb(value: string, tags: readonly ErbTag[]): string {
  return value.replace(TOKEN, (_m, i: string) => tags[Number(i)]!.source);
}
