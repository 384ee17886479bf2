// Step 1, expand: `full_name` is added nullable, so that the rows already there stay valid and
// the ALTER TABLE is instant (a change of the table's metadata, no copy). The application
// writes it with every insert and update from now on (dual write); `backfill` fills the rows
// written before. 201 characters: a first name, a space and a last name.
import { bigint, mysqlTable, varchar } from 'drizzle-orm/mysql-core';

export const users = mysqlTable('users', {
  id: bigint({ mode: 'number', unsigned: true }).autoincrement().primaryKey(),
  email: varchar({ length: 255 }).notNull(),
  firstName: varchar('first_name', { length: 100 }).notNull(),
  lastName: varchar('last_name', { length: 100 }).notNull(),
  fullName: varchar('full_name', { length: 201 }),
});
