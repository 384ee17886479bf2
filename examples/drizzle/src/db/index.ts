// The application's database handle: drizzle-orm over a node-postgres pool on DATABASE_URL,
// the same variable drizzle-kit and `backfill` read.
import { drizzle } from 'drizzle-orm/node-postgres';

import * as schema from './schema';

/** A drizzle database on a pool of at most `max` connections; `db.$client.end()` closes it. */
export function connect(max: number) {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('set DATABASE_URL to the database to work on');
  return drizzle({ connection: { connectionString: url, max }, schema });
}
