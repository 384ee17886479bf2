// The users the application has before the change: ids 1..N (N = argv[2]), written through
// drizzle-orm in chunks, then ANALYZEd so that `backfill plan` estimates from real statistics.
// AUTO_INCREMENT goes on after the highest id by itself.
import { sql } from 'drizzle-orm';

import { connect } from './db/index';
import { users } from './db/schema';
import { seededUser } from './users';

const rows = Number(process.argv[2]);
if (!Number.isSafeInteger(rows) || rows < 1) throw new Error(`usage: seed.ts ROWS (got ${process.argv[2]})`);

const chunk = 5000;
const db = connect(1);
try {
  for (let first = 1; first <= rows; first += chunk) {
    const count = Math.min(chunk, rows - first + 1);
    await db.insert(users).values(Array.from({ length: count }, (_, i) => seededUser(first + i)));
  }
  await db.execute(sql`ANALYZE TABLE users`);
  console.log(`seed: ${rows} users`);
} finally {
  await db.$client.end();
}
