// Applies the pending migrations of ./drizzle with drizzle-orm's migrator — the code that
// `drizzle-kit migrate` runs — and says how many it applied and how many
// `__drizzle_migrations` (in the application's database) records: run it again and it applies
// nothing. It is called directly because drizzle-kit 0.31.10 and 0.31.11 exit 1 without
// printing why a migration failed (drizzle-orm issue #5521), and on MySQL the reason decides
// what to do next. The migrator wraps the migrations in a transaction, but MySQL commits every
// DDL statement on its own, at once: a migration that failed at its ALTER TABLE, with one
// ALTER TABLE per migration, applied nothing; the migrations before it are applied and recorded.
import { sql } from 'drizzle-orm';
import { migrate } from 'drizzle-orm/mysql2/migrator';

import { connect } from './index';

/** The server's error for a metadata lock not granted within lock_wait_timeout. */
const ER_LOCK_WAIT_TIMEOUT = 1205;
/** The server's error for a table that does not exist. */
const ER_NO_SUCH_TABLE = 1146;

type ServerError = { message?: string; errno?: number; code?: string };

const db = connect(1);

/** How many migrations __drizzle_migrations records; 0 before the first migration. */
async function recorded() {
  try {
    const [rows] = await db.execute(sql`SELECT COUNT(*) AS n FROM __drizzle_migrations`);
    return Number((rows as unknown as { n: number }[])[0].n);
  } catch (error) {
    if ((error as { cause?: ServerError }).cause?.errno === ER_NO_SUCH_TABLE) return 0;
    throw error;
  }
}

try {
  const before = await recorded();
  await migrate(db, { migrationsFolder: './drizzle' });
  const after = await recorded();
  console.log(
    `migrate: applied ${after - before}, ${after} recorded in __drizzle_migrations: ` +
      'every migration in ./drizzle is applied',
  );
} catch (error) {
  const cause = (error as { cause?: ServerError }).cause;
  const reason = cause?.message ? `${cause.message} (error ${cause.errno}, ${cause.code})` : String(error);
  const advice =
    cause?.errno === ER_LOCK_WAIT_TIMEOUT
      ? 'the failed migration applied nothing; run it again when the table is less busy'
      : 'MySQL commits each DDL statement at once: the failed migration\'s statements before ' +
        'this one stay applied; fix the migration, or the table, before running it again';
  console.error(`migrate: FAILED: ${reason}\n${(error as Error).message}\n${advice}`);
  process.exitCode = 1;
} finally {
  await db.$client.end();
}
