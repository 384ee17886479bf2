// Step 1, expand: `full_name` is added nullable, so that the rows already there stay valid and
// the ALTER TABLE is a catalog change only. The application writes it with every insert and
// update from now on (dual write); `backfill` fills the rows written before.
import { bigserial, pgTable, text } from 'drizzle-orm/pg-core';

export const users = pgTable('users', {
  id: bigserial({ mode: 'number' }).primaryKey(),
  email: text().notNull(),
  firstName: text('first_name').notNull(),
  lastName: text('last_name').notNull(),
  fullName: text('full_name'),
});
