/**
 * berth's own validation of one app key, so a mapped value is carried over only when
 * berth accepts it (and otherwise reported with berth's own message): the import's
 * output passes `berth check-config` by construction, with no rule written twice.
 */
import { readApp } from '../config/app.js';
import { Issues } from '../config/reader.js';

const PROBE = 'probe';

/**
 * berth's messages for `key: value` in an app, each after its path below the key when it
 * has one (`tls: TLS needs proxy.host`); empty when berth accepts it.
 */
export function refusals(key: string, value: unknown): string[] {
  const issues = new Issues();
  readApp(PROBE, { image: PROBE, hosts: [PROBE], [key]: value }, [PROBE], '', issues, { allowHostAccess: false });
  return issues.list.map((i) => {
    const below = i.path.slice(key.length).replace(/^\[\d+\]/, '').replace(/^\./, '');
    return below === '' ? i.message : `${below}: ${i.message}`;
  });
}
