import { readFileSync } from 'node:fs';

/** berth's own version, from package.json (two levels up from src/ and dist/ alike). */
export const BERTH_VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
