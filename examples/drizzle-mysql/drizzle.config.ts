// drizzle-kit's configuration: the schema it diffs, where migrations go, and the database
// `drizzle-kit migrate` applies them to (DATABASE_URL, the same variable `backfill` reads).
import { defineConfig } from 'drizzle-kit';

export default defineConfig({
  dialect: 'mysql',
  schema: './src/db/schema.ts',
  out: './drizzle',
  dbCredentials: { url: process.env.DATABASE_URL! },
});
