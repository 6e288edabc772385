/**
 * The seed's Kamal config (Kamal 1: servers web on 3 hosts, healthcheck path/port/
 * max_attempts/interval, boot limit 1 / wait 5, a pre-deploy hook that migrates,
 * retain_containers 5, Traefik publishing 80 and 443), as the files of a Kamal project,
 * for `berth import-kamal`'s unit test and its acceptance on the test hosts.
 */
export interface SeedOptions {
  service: string;
  servers: string[];
  registry: { server: string; username: string };
  /** ssh.keys, when the hosts need a key of their own (the bed's). */
  sshKey?: string;
  /** What the hook migrates with, run in the app's image (`bin/rails db:migrate`). */
  migrate: string;
}

/** Files by path relative to the project: config/deploy.yml and .kamal/hooks/pre-deploy. */
export function seedKamalProject(o: SeedOptions): Record<string, string> {
  const deployYml = `service: ${o.service}
image: app
servers:
  web:
${o.servers.map((s) => `    - ${s}`).join('\n')}
${o.sshKey ? `ssh:\n  user: root\n  keys: [ "${o.sshKey}" ]\n` : ''}registry:
  server: ${o.registry.server}
  username: ${o.registry.username}
  password:
    - KAMAL_REGISTRY_PASSWORD
env:
  clear:
    APP_ENV: production
healthcheck:
  path: /health
  port: 3000
  max_attempts: 10
  interval: 5s
boot:
  limit: 1
  wait: 5
retain_containers: 5
traefik:
  options:
    publish:
      - "443:443"
  args:
    entryPoints.web.address: ":80"
    entryPoints.websecure.address: ":443"
builder:
  multiarch: false
`;
  const preDeploy = `#!/bin/sh
echo "Migrating to $KAMAL_VERSION"
kamal app exec --primary --reuse '${o.migrate}'
`;
  return { 'config/deploy.yml': deployYml, '.kamal/hooks/pre-deploy': preDeploy };
}
