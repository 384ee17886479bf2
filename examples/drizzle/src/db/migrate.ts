// Applies the pending migrations of ./drizzle with drizzle-orm's migrator — the code that
// `drizzle-kit migrate` runs: every pending migration in ONE transaction, recorded in
// drizzle.__drizzle_migrations. It is called directly because drizzle-kit 0.31.10 and 0.31.11
// exit 1 without printing why a migration failed (drizzle-orm issue #5521), and the reason
// matters: a lock timeout (SQLSTATE 55P03) rolled everything back and only needs another try
// later; any other error needs a fixed migration.
import { migrate } from 'drizzle-orm/node-postgres/migrator';

import { connect } from './index';

const db = connect(1);
try {
  await migrate(db, { migrationsFolder: './drizzle' });
  console.log('migrate: every migration in ./drizzle is applied');
} catch (error) {
  const cause = (error as { cause?: { message?: string; code?: string } }).cause;
  const reason = cause?.message ? `${cause.message} (SQLSTATE ${cause.code})` : String(error);
  const advice =
    cause?.code === '55P03'
      ? 'nothing was applied; run it again when the table is less busy'
      : 'nothing was applied; fix the migration';
  console.error(`migrate: FAILED: ${reason}\n${(error as Error).message}\n${advice}`);
  process.exitCode = 1;
} finally {
  await db.$client.end();
}
