// The application after the expand migration, while the backfill runs: WORKERS loops that
// insert new users and rename existing ones as fast as they can, writing full_name with every
// write (the dual write). Any failed write stops it with exit 1 at once.
//
// On SIGTERM it finishes the writes in flight, writes LEDGER (argv[2]): the names it wrote last
// to every row it touched, for check.ts; prints what it did and exits 0. READY (argv[3]) is
// created once the first writes have landed, so that the backfill starts under load.
import { writeFileSync } from 'node:fs';

import { eq, max } from 'drizzle-orm';

import { connect } from './db/index';
import { users } from './db/schema';
import { fullName } from './users';

const [ledgerPath, readyPath] = process.argv.slice(2);
if (!ledgerPath || !readyPath) throw new Error('usage: app.ts LEDGER READY');
const workers = Number(process.env.WORKERS ?? 4);

const db = connect(workers);
const [{ highest }] = await db.select({ highest: max(users.id) }).from(users);
/** The users that were there before the application started: ids 1..seeded. */
const seeded = Number(highest ?? 0);
/** id → [first name, last name] of the application's last committed write of that row. */
const ledger = new Map<number, [string, string]>();
const latencies: number[] = [];
let inserts = 0;
let renames = 0;
let stopping = false;
let ready = false;
process.on('SIGTERM', () => {
  stopping = true;
});

/** Inserts one user, full_name included; returns its id. */
async function insertUser(worker: number, n: number) {
  const firstName = `App${worker}`;
  const lastName = `User${n}`;
  // drizzle's MySQL dialect has no RETURNING: $returningId reads the id the insert generated.
  const [{ id }] = await db
    .insert(users)
    .values({ email: `app${worker}.${n}@example.com`, firstName, lastName, fullName: fullName(firstName, lastName) })
    .$returningId();
  ledger.set(id, [firstName, lastName]);
  inserts += 1;
  return id;
}

/**
 * Renames user `id`, full_name included. Each worker renames only rows no other worker writes,
 * so that the ledger's last write of a row is the row's last write.
 */
async function renameUser(worker: number, n: number, id: number) {
  const firstName = `Renamed${worker}`;
  const lastName = `Again${n}`;
  const [{ affectedRows }] = await db
    .update(users)
    .set({ firstName, lastName, fullName: fullName(firstName, lastName) })
    .where(eq(users.id, id));
  if (affectedRows !== 1) throw new Error(`renaming user ${id} updated ${affectedRows} rows`);
  ledger.set(id, [firstName, lastName]);
  renames += 1;
}

/** Worker w's loop: inserts, and renames of the users it inserted or of seeded ids ≡ w (mod workers). */
async function worker(w: number) {
  const mine = Math.floor((seeded - 1 - w) / workers) + 1;
  const own: number[] = [];
  for (let n = 0; !stopping; n++) {
    const started = performance.now();
    if (Math.random() < 0.5) {
      own.push(await insertUser(w, n));
    } else {
      const k = Math.floor(Math.random() * (mine + own.length));
      await renameUser(w, n, k < mine ? 1 + w + workers * k : own[k - mine]);
    }
    latencies.push(performance.now() - started);
    if (!ready && inserts + renames >= 100 * workers) {
      ready = true;
      writeFileSync(readyPath, '');
    }
  }
}

const started = performance.now();
try {
  await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
} catch (error) {
  console.error(`application: a write FAILED: ${(error as { cause?: Error }).cause ?? error}`);
  process.exit(1);
}
await db.$client.end();
writeFileSync(ledgerPath, JSON.stringify({ inserts, rows: [...ledger] }));
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const p99 = latencies[Math.floor(latencies.length * 0.99)] ?? 0;
console.log(
  `application: ${inserts} inserts and ${renames} renames in ${seconds.toFixed(1)} s ` +
    `(${Math.round((inserts + renames) / seconds)} writes/s, p99 ${p99.toFixed(1)} ms, ` +
    `max ${(latencies.at(-1) ?? 0).toFixed(1)} ms), every one with full_name`,
);
