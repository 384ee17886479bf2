#!/usr/bin/env bash
# The whole story of README.md, run for real: expand with drizzle-kit, the application's dual
# write under load, backfill plan / run / verify, contract with drizzle-kit, and a check of
# every row. Exit 0 only when every step passed and every row is right.
#
#   DATABASE_URL  a throwaway database: the script creates the table `users` in it (required)
#   BACKFILL      the backfill binary (default: `backfill` on PATH)
#   NODE_MODULES  installed dependencies (default: ./node_modules, from `npm ci`)
#   ROWS          users in the table before the change (default 200000)
#
# It works in a temporary copy of this directory: the schema edits and the migrations it
# generates never touch the checkout, and a second run starts from the same place.
set -Eeuo pipefail
trap 'echo "run.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

: "${DATABASE_URL:?set DATABASE_URL to a throwaway database (the script creates the table users)}"
export DATABASE_URL
here=$(cd "$(dirname "$0")" && pwd)
BACKFILL=${BACKFILL:-backfill}
NODE_MODULES=${NODE_MODULES:-$here/node_modules}
ROWS=${ROWS:-200000}
started=$SECONDS

fail() {
  echo "run.sh: FAILED: $*" >&2
  exit 1
}
step() {
  printf '\n== %s\n' "$*"
}
# Accept drizzle-kit's migration FILE only if its SQL is exactly STATEMENT (the review), then
# prepend `SET LOCAL lock_timeout`: the migration runs in one transaction with every other
# pending one, and without a lock timeout its ALTER TABLE would queue for the table's ACCESS
# EXCLUSIVE lock behind any long transaction, and every query of the application behind it.
review() {
  local file=$1 statement=$2
  [ "$(cat "$file")" = "$statement" ] ||
    fail "drizzle-kit generated something else than the reviewed migration in $file:
$(cat "$file")
expected:
$statement"
  { printf "SET LOCAL lock_timeout = '5s';--> statement-breakpoint\n"; cat "$file"; } >"$file.new"
  mv "$file.new" "$file"
  printf -- '--- %s\n%s\n---\n' "${file#"$work"/}" "$(cat "$file")"
}

command -v "$BACKFILL" >/dev/null || fail "no backfill binary ($BACKFILL): set BACKFILL"
[ -d "$NODE_MODULES/drizzle-kit" ] || fail "no drizzle-kit in $NODE_MODULES: run npm ci in $here, or set NODE_MODULES"
# Absolute paths: the script works in another directory.
case $BACKFILL in */*) BACKFILL=$(cd "$(dirname "$BACKFILL")" && pwd)/$(basename "$BACKFILL") ;; esac
NODE_MODULES=$(cd "$NODE_MODULES" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/backfill-drizzle.XXXXXX")
app=
cleanup() {
  if [ -n "$app" ] && kill -0 "$app" 2>/dev/null; then kill "$app"; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp -R "$here/package.json" "$here/drizzle.config.ts" "$here/drizzle" "$here/src" "$here/steps" "$here/jobs" "$work/"
ln -s "$NODE_MODULES" "$work/node_modules"
cd "$work"
PATH=$work/node_modules/.bin:$PATH

step "0. before the change: drizzle/0000 creates users, and there are $ROWS of them"
tsx src/db/migrate.ts
tsx src/seed.ts "$ROWS"

step "1. expand: schema.ts gets fullName: text('full_name'), nullable; drizzle-kit writes the migration"
cp steps/expand/schema.ts src/db/schema.ts
drizzle-kit generate --name expand_full_name
review drizzle/0001_expand_full_name.sql 'ALTER TABLE "users" ADD COLUMN "full_name" text;'
tsx src/db/migrate.ts

step "2. the application, deployed with the expand step, writes full_name with every insert and update"
node --import tsx src/app.ts "$work/ledger.json" "$work/app.ready" &
app=$!
for _ in $(seq 300); do
  [ -e app.ready ] && break
  kill -0 "$app" 2>/dev/null || fail "the application stopped before it was ready"
  sleep 0.1
done
[ -e app.ready ] || fail "the application made no 100 writes within 30 s"
echo "the application is writing"

# --exact-count: the new column has no statistics yet, so the planner's estimate of the rows
# `full_name IS NULL` matches is a default 0.5% of the table; counting is cheap at this size
# (on a big table, ANALYZE users after the expand migration instead).
step "3. backfill plan, then backfill run, while the application writes"
"$BACKFILL" plan --exact-count jobs/users_full_name.toml
gate=0
"$BACKFILL" verify jobs/users_full_name.toml || gate=$?
[ "$gate" = 3 ] || fail "backfill verify before the run exited $gate, expected 3 (rows pending)"
echo "verify before the run: exit 3, the contract migration may not go ahead yet"
"$BACKFILL" run --exact-count jobs/users_full_name.toml
kill -0 "$app" 2>/dev/null || fail "the application stopped during the backfill"

step "4. backfill verify: the CI gate in front of the contract migration (0 = go, 3 = rows pending)"
gate=0
"$BACKFILL" verify jobs/users_full_name.toml || gate=$?
[ "$gate" = 0 ] || fail "backfill verify exited $gate: the contract migration must not go ahead"
echo "verify: exit 0, the contract migration may go ahead"

step "5. contract: schema.ts gets .notNull(); drizzle-kit writes SET NOT NULL; applied while the application writes"
cp steps/contract/schema.ts src/db/schema.ts
drizzle-kit generate --name contract_full_name
review drizzle/0002_contract_full_name.sql 'ALTER TABLE "users" ALTER COLUMN "full_name" SET NOT NULL;'
tsx src/db/migrate.ts

step "6. stop the application, check every row"
kill -TERM "$app"
wait "$app" || fail "the application exited $?"
app=
tsx src/check.ts "$work/ledger.json" "$ROWS"

echo
echo "run.sh: the whole story passed in $((SECONDS - started)) s"
