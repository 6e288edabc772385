/**
 * Kamal's hooks are scripts run on the deployer's machine around a deploy; berth's hooks are
 * commands run in a one-off container of the new image on the first host. What carries over
 * is the migration: a `pre-deploy` line that runs one (`kamal app exec … "bin/rails
 * db:migrate"`, or the command itself) becomes `hooks.pre_deploy`, which berth runs once per
 * release before any host switches. Everything else a hook does is reported, line by line.
 */
import { splitWords } from '../config/container.js';
import type { MapContext } from './context.js';
import type { HookScript } from './source.js';

/** A command that migrates: Rails' `db:migrate`, `migrate` as a word (Django, Laravel, knex, …). */
const MIGRATES = /(^|[\s:/"'])(db:)?migrat(e|ions?)\b/i;
/** Lines that only print (`echo "Running migrations"`) are not the migration itself. */
const PRINTS = /^(echo|printf)\b/;
/** Options of `kamal app exec` that take a value (`-d staging`, `--roles web`). */
const VALUED_OPTIONS = new Set(['-d', '--destination', '-r', '--roles', '-h', '--hosts', '-c', '--config-file', '-e', '--env']);

/** The pre_deploy commands found in the hook scripts; every other line or script is noted. */
export function readHooks(ctx: MapContext, hooks: readonly HookScript[]): string[] {
  const commands: string[] = [];
  for (const hook of hooks) {
    if (hook.name !== 'pre-deploy') {
      ctx.note(hook.file, `not imported: Kamal runs it on your machine (${hook.name}); berth runs only commands in the app's image, before (hooks.pre_deploy) and after (hooks.post_deploy) a release`);
      continue;
    }
    hook.text.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#') || /^(set|exit)\b/.test(line)) return;
      const at = `${hook.file}:${i + 1}`;
      const inApp = appExecCommand(line);
      if (inApp !== null && MIGRATES.test(inApp)) {
        commands.push(inApp);
        ctx.note(at, `now hooks.pre_deploy: ${JSON.stringify(inApp)}, run once per release in a one-off container of the NEW image on the first host, before any host switches (Kamal's --reuse ran it in the old container)`);
      } else if (inApp === null && MIGRATES.test(line) && !PRINTS.test(line)) {
        commands.push(line);
        ctx.note(at, `now hooks.pre_deploy: ${JSON.stringify(line)}: Kamal ran it on your machine; berth runs it in a one-off container of the new image on the first host (with the app's env and secrets)`);
      } else {
        ctx.note(at, `not imported: only a migration carries over from ${hook.name} (${line.length > 60 ? `${line.slice(0, 57)}...` : line})`);
      }
    });
  }
  return commands;
}

/** The command of `kamal app exec [options] "CMD"` (also `bin/kamal`, `bundle exec kamal`), else null. */
export function appExecCommand(line: string): string | null {
  const words = splitWords(line);
  if (!words) return null;
  const at = words.findIndex((w, i) => /(^|\/)kamal$/.test(w) && words[i + 1] === 'app' && words[i + 2] === 'exec');
  if (at === -1) return null;
  const rest = words.slice(at + 3);
  let i = 0;
  while (i < rest.length && rest[i]!.startsWith('-')) i += VALUED_OPTIONS.has(rest[i]!) ? 2 : 1;
  const command = rest.slice(i).join(' ').trim();
  return command === '' ? null : command;
}
