/** Every label berth sets starts with this; an app's own labels may not. */
export const LABEL_PREFIX = 'berth.';

/** Container labels: the ownership contract (docs/design.md, "The loop", container labels). */
export const LABELS = {
  managed: 'berth.managed',
  app: 'berth.app',
  revision: 'berth.revision',
  version: 'berth.version',
  role: 'berth.role',
  /** containerConfigHash of the release the container was made from. */
  config: 'berth.config',
  /** The process of an app with `processes` (src/domain/processes.ts); absent on the implicit process's containers. */
  process: 'berth.process',
} as const;

/** Deterministic so a retried create after a crash meets a name conflict instead of a duplicate. */
export function containerName(app: string, revision: number, process?: string | null): string {
  return process ? `${app}-${process}-r${revision}` : `${app}-r${revision}`;
}

export const PROXY_CONTAINER_NAME = 'berth-proxy';
export const NETWORK_NAME = 'berth';
