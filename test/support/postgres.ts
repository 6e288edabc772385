// TEMPORARY (lead): replaced by the pgbed branch's fixture on merge.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

const ADMIN = 'postgres://postgres@127.0.0.1:55999/postgres';

export function postgresAvailable(): boolean {
  return true;
}

export async function freshDatabase(name = `berth_t_${randomBytes(4).toString('hex')}`): Promise<{ url: string; drop(): Promise<void> }> {
  const c = new pg.Client(ADMIN);
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  return {
    url: `postgres://postgres@127.0.0.1:55999/${name}`,
    async drop() {
      const d = new pg.Client(ADMIN);
      await d.connect();
      await d.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await d.end();
    },
  };
}
