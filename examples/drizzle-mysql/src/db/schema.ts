// The application's schema before the change: users with a first and a last name.
import { bigint, mysqlTable, varchar } from 'drizzle-orm/mysql-core';

export const users = mysqlTable('users', {
  id: bigint({ mode: 'number', unsigned: true }).autoincrement().primaryKey(),
  email: varchar({ length: 255 }).notNull(),
  firstName: varchar('first_name', { length: 100 }).notNull(),
  lastName: varchar('last_name', { length: 100 }).notNull(),
});
