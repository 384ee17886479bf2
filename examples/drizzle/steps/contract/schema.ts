// Step 3, contract: once `backfill verify` passes, every row has `full_name`, and the column
// becomes NOT NULL.
import { bigserial, pgTable, text } from 'drizzle-orm/pg-core';

export const users = pgTable('users', {
  id: bigserial({ mode: 'number' }).primaryKey(),
  email: text().notNull(),
  firstName: text('first_name').notNull(),
  lastName: text('last_name').notNull(),
  fullName: text('full_name').notNull(),
});
