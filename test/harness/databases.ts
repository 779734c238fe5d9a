/**
 * The index suites run against SQLite always, and against PostgreSQL when TEST_DATABASE_URL is set
 * (CI sets it). Each PostgreSQL run gets a database of its own, dropped afterwards.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  name: 'sqlite' | 'postgres';
  /** undefined = embedded SQLite under the node's data directory. */
  url: string | undefined;
  drop(): Promise<void>;
}

export async function testDatabases(): Promise<TestDatabase[]> {
  const list: TestDatabase[] = [{ name: 'sqlite', url: undefined, drop: async () => undefined }];
  const base = process.env.TEST_DATABASE_URL;
  if (base) list.push(await createPostgresDatabase(base));
  return list;
}

export async function createPostgresDatabase(base: string): Promise<TestDatabase> {
  const dbName = `opendrim_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${dbName}`;
  return {
    name: 'postgres',
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await c.end();
    },
  };
}
