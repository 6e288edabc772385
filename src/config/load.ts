/** Reading the YAML config file, and the environment variables that override it. */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseDocument, type YAMLError } from 'yaml';
import type { BerthConfig } from '../domain/app-spec.js';
import { ConfigError, type ConfigIssue } from '../domain/errors.js';
import { Issues } from './reader.js';
import { validateConfigDocument, type ValidateOptions } from './validate.js';
import { readListen, readToken } from './values.js';

/** Issue path for problems with the file as a whole (missing, unreadable). */
export const FILE_PATH = '(file)';
/** Issue path for YAML syntax errors; the message starts with `line L, column C:`. */
export const YAML_PATH = '(yaml)';

/** Alias expansions a config may use: plenty for shared env blocks, far too few for a "billion laughs" document. */
const MAX_YAML_ALIAS_EXPANSIONS = 100;

const READ_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
};

/**
 * Reads and validates the config file. Throws ConfigError for a missing or
 * unreadable file, YAML syntax errors (with line and column), or invalid
 * content (with key paths). An empty file is an empty config.
 * Relative local paths inside (ssh_key, known_hosts) are taken from the file's directory.
 */
export function loadConfig(path: string, opts: Omit<ValidateOptions, 'baseDir'> = {}): BerthConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    const why = READ_ERRORS[code] ?? (err as Error).message;
    throw new ConfigError([{ path: FILE_PATH, message: `cannot read config file ${resolve(path)}: ${why}` }]);
  }
  return validateConfigDocument(parseYaml(text), { ...opts, baseDir: dirname(resolve(path)) });
}

/**
 * YAML text -> plain data. Warnings count as errors too (an unresolved tag
 * like `!secret` would otherwise quietly become a string).
 */
export function parseYaml(text: string): unknown {
  // merge: `<<: *defaults` is how people share env blocks between apps; uniqueKeys
  // (the default) makes a repeated key an error instead of last-one-wins.
  const doc = parseDocument(text, { merge: true, uniqueKeys: true, prettyErrors: true });
  const problems = [...doc.errors, ...doc.warnings];
  if (problems.length > 0) throw new ConfigError(problems.map(yamlIssue));
  try {
    // toJS throws for an alias to an unknown anchor, or too many alias expansions ("billion laughs").
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIAS_EXPANSIONS });
  } catch (err) {
    throw new ConfigError([{ path: YAML_PATH, message: (err as Error).message }]);
  }
}

function yamlIssue(e: YAMLError): ConfigIssue {
  // yaml's prettyErrors message is "<what> at line L, column C:\n\n<excerpt>"; keep the first part.
  const what = e.message.split(/ at line \d+, column \d+/)[0]?.trim() ?? e.message;
  const pos = e.linePos?.[0];
  return { path: YAML_PATH, message: pos ? `line ${pos.line}, column ${pos.col}: ${what}` : what };
}

/**
 * Applies BERTH_TOKEN and BERTH_LISTEN over the file's `api.token` and
 * `api.listen`. An empty variable counts as unset (`docker run -e BERTH_TOKEN=`
 * should not produce an API with an empty token). Returns a new config;
 * throws ConfigError (path = the variable name) for a malformed value.
 */
export function applyEnv(config: BerthConfig, env: Record<string, string | undefined>): BerthConfig {
  const issues = new Issues();
  const api = { ...config.api };
  const token = env.BERTH_TOKEN;
  if (token !== undefined && token !== '') api.token = readToken(token, 'BERTH_TOKEN', issues) ?? api.token;
  const listen = env.BERTH_LISTEN;
  if (listen !== undefined && listen !== '') api.listen = readListen(listen, 'BERTH_LISTEN', issues) ?? api.listen;
  if (!issues.empty) throw new ConfigError(issues.list);
  return { ...config, api };
}
