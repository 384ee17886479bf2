// A long transaction on users — a report, a console session left open — that holds the
// table's shared metadata lock until SIGTERM. Every ALTER TABLE needs the exclusive one, if
// only for a moment, so it waits for this transaction, and the application's writes queue
// behind the waiting ALTER TABLE: the migration's lock_wait_timeout bounds that queue.
// READY (argv[2]) is created once the transaction has read the table.
import { writeFileSync } from 'node:fs';

import { connect } from './db/index';
import { users } from './db/schema';

const [readyPath] = process.argv.slice(2);
if (!readyPath) throw new Error('usage: hold.ts READY');

const db = connect(1);
try {
  await db.transaction(async (tx) => {
    await tx.select({ id: users.id }).from(users).limit(1);
    writeFileSync(readyPath, '');
    await new Promise((resolve) => process.once('SIGTERM', resolve));
  });
  console.log('hold: the long transaction on users committed');
} finally {
  await db.$client.end();
}
