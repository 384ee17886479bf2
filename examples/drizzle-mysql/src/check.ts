// The end of the story, checked as a user would: every row holds what the application or the
// backfill should have written, no row is missing or extra, and the contract migration applied.
// argv: LEDGER (written by app.ts) and SEEDED (how many users seed.ts wrote). Exit 1 on any
// difference, naming the first rows that differ.
import { readFileSync } from 'node:fs';

import { sql } from 'drizzle-orm';

import { connect } from './db/index';
import { fullName, seededUser } from './users';

const [ledgerPath, seededArg] = process.argv.slice(2);
const seeded = Number(seededArg);
const app = JSON.parse(readFileSync(ledgerPath, 'utf8')) as { inserts: number; rows: [number, [string, string]][] };
const ledger = new Map(app.rows);

/** The names user `id` should have: the application's last write, else the seeded ones. */
function expectedNames(id: number): [string, string] | undefined {
  const written = ledger.get(id);
  if (written || id > seeded) return written;
  const { firstName, lastName } = seededUser(id);
  return [firstName, lastName];
}

const db = connect(1);
const problems: string[] = [];
try {
  // Read as plain SQL, not through the application's schema: the check sees the table as it is.
  // mysql2 answers [rows, fields]; drizzle types the rows loosely.
  const [rows] = (await db.execute(
    sql`SELECT id, first_name, last_name, full_name FROM users ORDER BY id`,
  )) as unknown as [{ id: number; first_name: string; last_name: string; full_name: string | null }[]];
  for (const row of rows) {
    const names = expectedNames(Number(row.id));
    const expected = names ? `${names[0]} | ${names[1]} | ${fullName(...names)}` : 'no such row';
    const actual = `${row.first_name} | ${row.last_name} | ${row.full_name}`;
    if (actual !== expected) problems.push(`user ${row.id}: expected ${expected}, found ${actual}`);
  }
  if (rows.length !== seeded + app.inserts) {
    problems.push(`${rows.length} users, expected ${seeded} seeded + ${app.inserts} inserted by the application`);
  }
  // Named with AS: MySQL names information_schema's columns in capitals, MariaDB as written.
  const [[column]] = (await db.execute(
    sql`SELECT is_nullable AS is_nullable FROM information_schema.columns
        WHERE table_schema = DATABASE() AND table_name = 'users' AND column_name = 'full_name'`,
  )) as unknown as [{ is_nullable: string }[]];
  if (column?.is_nullable !== 'NO') problems.push(`users.full_name is nullable (${column?.is_nullable}): the contract migration did not apply`);
  if (problems.length > 0) {
    console.error(`check: FAILED, ${problems.length} problems; the first ones:\n  ${problems.slice(0, 10).join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log(
      `check: all ${rows.length} users are right (${seeded} seeded, ${app.inserts} inserted and ` +
        `${ledger.size - app.inserts} more renamed by the application), and full_name is NOT NULL`,
    );
  }
} finally {
  await db.$client.end();
}
