// Step 3, contract: once `backfill verify` passes, every row has `full_name`, and the column
// becomes NOT NULL.
import { bigint, mysqlTable, varchar } from 'drizzle-orm/mysql-core';

export const users = mysqlTable('users', {
  id: bigint({ mode: 'number', unsigned: true }).autoincrement().primaryKey(),
  email: varchar({ length: 255 }).notNull(),
  firstName: varchar('first_name', { length: 100 }).notNull(),
  lastName: varchar('last_name', { length: 100 }).notNull(),
  fullName: varchar('full_name', { length: 201 }).notNull(),
});
