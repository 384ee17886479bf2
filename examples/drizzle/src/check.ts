// The end of the story, checked as a user would: every row holds what the application or the
// backfill should have written, no row is missing or extra, and the contract migration applied.
// argv: LEDGER (written by app.ts) and SEEDED (how many users seed.ts wrote). Exit 1 on any
// difference, naming the first rows that differ.
import { readFileSync } from 'node:fs';

import { asc, sql } from 'drizzle-orm';

import { connect } from './db/index';
import { users } from './db/schema';
import { fullName, seededUser } from './users';

const [ledgerPath, seededArg] = process.argv.slice(2);
const seeded = Number(seededArg);
const app = JSON.parse(readFileSync(ledgerPath, 'utf8')) as {
  inserts: number;
  renames: number;
  rows: [number, [string, string]][];
};
const ledger = new Map(app.rows);

const db = connect(1);
const problems: string[] = [];
try {
  const rows = await db.select().from(users).orderBy(asc(users.id));
  for (const row of rows) {
    const written = ledger.get(row.id);
    const [firstName, lastName] = written ?? (row.id <= seeded ? [seededUser(row.id).firstName, seededUser(row.id).lastName] : []);
    const expected = firstName === undefined ? 'no such row' : `${firstName} | ${lastName} | ${fullName(firstName, lastName)}`;
    const actual = `${row.firstName} | ${row.lastName} | ${row.fullName}`;
    if (actual !== expected) problems.push(`user ${row.id}: expected ${expected}, found ${actual}`);
  }
  if (rows.length !== seeded + app.inserts) {
    problems.push(`${rows.length} users, expected ${seeded} seeded + ${app.inserts} inserted by the application`);
  }
  const { rows: [column] } = await db.execute<{ is_nullable: string }>(
    sql`SELECT is_nullable FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'full_name'`,
  );
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
