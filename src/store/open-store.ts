import { chmodSync, mkdirSync } from 'node:fs';
import type { Config } from '../config/config.js';
import type { Logger } from '../common/log.js';
import { openDatabase, type Database } from './db.js';
import { migrateToLatest } from './migrations.js';
import { FsBlobStore } from './blobs.js';
import { StudyIndex } from './study-index.js';
import { Ingestor } from './ingest.js';

export interface Store {
  database: Database;
  index: StudyIndex;
  blobs: FsBlobStore;
  ingestor: Ingestor;
  close(): Promise<void>;
}

/** Opens the index (migrated to the latest schema) and the instance files, as configured. */
export async function openStore(config: Config, log: Logger): Promise<Store> {
  // The data directory holds patient data, the index and the node's keys: this service's user only.
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(config.dataDir, 0o700);
  const database = openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  await migrateToLatest(database.db, database.dialect);
  const index = new StudyIndex(database.db, database.dialect);
  const blobs = new FsBlobStore(config.dataDir, { fsync: config.storage.fsync });
  const ingestor = new Ingestor(blobs, index, { duplicates: config.storage.duplicates, maxInstanceBytes: config.storage.maxInstanceBytes, log });
  return {
    database,
    index,
    blobs,
    ingestor,
    async close() {
      await blobs.close();
      await database.close();
    },
  };
}
