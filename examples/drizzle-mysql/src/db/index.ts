// The application's database handle: drizzle-orm over a mysql2 pool on DATABASE_URL, the same
// variable drizzle-kit and `backfill` read (mysql2 takes mysql:// and mariadb:// alike).
import { drizzle } from 'drizzle-orm/mysql2';

import * as schema from './schema';

/** A drizzle database on a pool of at most `max` connections; `db.$client.end()` closes it. */
export function connect(max: number) {
  const url = process.env.DATABASE_URL;
  if (!url) throw new Error('set DATABASE_URL to the database to work on');
  return drizzle({ connection: { uri: url, connectionLimit: max }, schema, mode: 'default' });
}
