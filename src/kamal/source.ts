/**
 * Reading a Kamal project for `berth import-kamal`: `config/deploy.yml`, the destination's
 * `config/deploy.DESTINATION.yml` merged over it as Kamal merges them (maps key by key,
 * anything else replaced), and the hook scripts next to them. ERB is masked, never run.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { KamalImportError } from '../domain/errors.js';
import { isMap } from '../config/reader.js';
import { maskErb, type ErbTag } from './erb.js';

export interface HookScript {
  /** Kamal's hook name: the file's name (`pre-deploy`). */
  name: string;
  /** Relative to the project (`.kamal/hooks/pre-deploy`), as notes name it. */
  file: string;
  text: string;
}

export interface KamalSource {
  /** The config files read, base first, relative to the project. */
  files: string[];
  /** The merged document, ERB masked (src/kamal/erb.ts). */
  doc: Record<string, unknown>;
  erb: ErbTag[];
  hooks: HookScript[];
}

/** Kamal's default, relative to the project (the directory holding config/). */
const DEFAULT_HOOKS_PATH = '.kamal/hooks';
/** Aliases a Kamal file may expand (shared env blocks); far below a "billion laughs" document. */
const MAX_ALIAS_EXPANSIONS = 100;

/**
 * PATH is the project directory (its config/deploy.yml is read) or the deploy.yml itself;
 * the project is then the directory above config/ (hooks are found from there, as Kamal
 * runs from the project's root).
 */
export function resolveKamalPaths(path: string): { root: string; config: string } {
  const full = resolve(path);
  if (existsSync(full) && statSync(full).isDirectory()) return { root: full, config: join(full, 'config', 'deploy.yml') };
  const dir = dirname(full);
  return { root: basename(dir) === 'config' ? dirname(dir) : dir, config: full };
}

export function readKamalSource(path: string, destination: string | null): KamalSource {
  const { root, config } = resolveKamalPaths(path);
  const files = [config, ...(destination === null ? [] : [config.replace(/\.yml$/, '') + `.${destination}.yml`])];
  const erb: ErbTag[] = [];
  let doc: Record<string, unknown> = {};
  for (const file of files) {
    const shown = relative(root, file) || file;
    doc = deepMerge(doc, parseKamalYaml(readText(file), shown, erb));
  }
  return { files: files.map((f) => relative(root, f)), doc, erb, hooks: readHooks(root, doc.hooks_path) };
}

/** A file that cannot be read is named in full: where the import looked is the question then. */
function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new KamalImportError('KAMAL_CONFIG_UNREADABLE', file, `cannot read ${file}: ${why}`, { cause: err });
  }
}

function parseKamalYaml(text: string, shown: string, erb: ErbTag[]): Record<string, unknown> {
  // Kamal's YAML loader (Psych) lets a repeated key win; `<<` merges are common in Kamal files.
  const doc = parseDocument(maskErb(text, shown, erb), { merge: true, uniqueKeys: false, prettyErrors: true });
  const problem = doc.errors[0];
  if (problem) {
    const pos = problem.linePos?.[0];
    const what = problem.message.split(/ at line \d+, column \d+/)[0]?.trim() ?? problem.message;
    throw new KamalImportError('KAMAL_CONFIG_INVALID', shown, `${shown}: ${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}${what}`);
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_EXPANSIONS });
  } catch (err) {
    throw new KamalImportError('KAMAL_CONFIG_INVALID', shown, `${shown}: ${(err as Error).message}`, { cause: err });
  }
  if (value === null || value === undefined) return {};
  if (!isMap(value)) throw new KamalImportError('KAMAL_CONFIG_INVALID', shown, `${shown}: expected a map of Kamal settings (service, image, servers, ...)`);
  return value;
}

/** ActiveSupport's deep_merge, which Kamal merges a destination's file with. */
function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const was = out[key];
    out[key] = isMap(was) && isMap(value) ? deepMerge(was, value) : value;
  }
  return out;
}

/** Every hook script in `hooks_path` (default .kamal/hooks), without `kamal init`'s `.sample` files. */
function readHooks(root: string, hooksPath: unknown): HookScript[] {
  const dir = resolve(root, typeof hooksPath === 'string' ? hooksPath : DEFAULT_HOOKS_PATH);
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return [];
  }
  const isFile = (name: string): boolean => {
    try {
      return statSync(join(dir, name)).isFile();
    } catch {
      return false; // a dangling link is no hook Kamal could run either
    }
  };
  return names
    .filter((name) => !name.endsWith('.sample') && isFile(name))
    .map((name) => ({ name, file: relative(root, join(dir, name)), text: readFileSync(join(dir, name), 'utf8') }));
}
