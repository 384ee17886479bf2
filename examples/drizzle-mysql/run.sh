#!/usr/bin/env bash
# The whole story of README.md on MySQL or MariaDB, run for real: expand with drizzle-kit, the
# application's dual write under load, backfill plan / run (stopped, then resumed) / verify,
# contract with drizzle-kit (timed out behind a long transaction, then applied), and a check of
# every row. Exit 0 only when every step passed and every row is right.
#
#   DATABASE_URL  mysql://user:password@host:port/db of a throwaway database: the script
#                 creates the table `users` in it (required; mariadb:// works the same)
#   BACKFILL      the backfill binary (default: `backfill` on PATH)
#   NODE_MODULES  installed dependencies (default: ./node_modules, from `npm ci`)
#   ROWS          users in the table before the change (default 200000)
#
# It works in a temporary copy of this directory: the schema edits and the migrations it
# generates never touch the checkout, and a second run starts from the same place.
set -Eeuo pipefail
trap 'echo "run.sh: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

: "${DATABASE_URL:?set DATABASE_URL to a throwaway MySQL or MariaDB database (the script creates the table users)}"
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
# Accept drizzle-kit's migration FILE only if its SQL is exactly that of REVIEWED (the migration
# as committed) after REVIEWED's first line, `SET SESSION lock_wait_timeout`, which the review
# added by hand; then put REVIEWED in its place.
review() {
  local file=$1 reviewed=$2
  [ "$(cat "$file")" = "$(tail -n +2 "$reviewed")" ] ||
    fail "drizzle-kit generated something else than the reviewed migration $reviewed in $file:
$(cat "$file")
expected:
$(tail -n +2 "$reviewed")"
  cp "$reviewed" "$file"
  printf -- '--- %s\n%s\n---\n' "${file#"$work"/}" "$(cat "$file")"
}
# Polls COMMAND… every 0.1 s, for at most 30 s, until it succeeds: until process PID (WHAT)
# gets to GOAL, which the messages name; fails at once if the process stops first.
wait_until() {
  local what=$1 pid=$2 goal=$3
  shift 3
  for _ in $(seq 300); do
    "$@" && return 0
    kill -0 "$pid" 2>/dev/null || fail "$what stopped before $goal"
    sleep 0.1
  done
  fail "$what did not get to $goal within 30 s"
}

command -v "$BACKFILL" >/dev/null || fail "no backfill binary ($BACKFILL): set BACKFILL"
[ -d "$NODE_MODULES/drizzle-kit" ] || fail "no drizzle-kit in $NODE_MODULES: run npm ci in $here, or set NODE_MODULES"
# Absolute paths: the script works in another directory.
case $BACKFILL in */*) BACKFILL=$(cd "$(dirname "$BACKFILL")" && pwd)/$(basename "$BACKFILL") ;; esac
NODE_MODULES=$(cd "$NODE_MODULES" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/backfill-drizzle-mysql.XXXXXX")
app= run= holder=
cleanup() {
  for pid in $app $run $holder; do
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; fi
  done
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

step "1. expand: schema.ts gets fullName: varchar('full_name', { length: 201 }), nullable; drizzle-kit writes the migration"
cp steps/expand/schema.ts src/db/schema.ts
drizzle-kit generate --name expand_full_name
review drizzle/0001_expand_full_name.sql steps/expand/migration.sql
tsx src/db/migrate.ts
echo "applied again, as a deploy that is retried would: __drizzle_migrations says there is nothing to do"
tsx src/db/migrate.ts

step "2. the application, deployed with the expand step, writes full_name with every insert and update"
node --import tsx src/app.ts "$work/ledger.json" "$work/app.ready" &
app=$!
wait_until "the application" "$app" "its first 100 writes per worker" test -e app.ready
echo "the application is writing"

step "3. backfill plan, then backfill run, while the application writes"
"$BACKFILL" plan jobs/users_full_name.toml
gate=0
"$BACKFILL" verify jobs/users_full_name.toml || gate=$?
[ "$gate" = 3 ] || fail "backfill verify before the run exited $gate, expected 3 (rows pending)"
echo "verify before the run: exit 3, the contract migration may not go ahead yet"
# The run stops after its first batches, as a deploy or a reboot would stop it: SIGTERM ends
# the batch in flight, and each batch's checkpoint commits with the batch.
"$BACKFILL" run jobs/users_full_name.toml >stopped.log 2>&1 &
run=$!
wait_until "backfill run" "$run" "its first batch" grep -q 'rows/s' stopped.log
kill -TERM "$run"
stopped=0
wait "$run" || stopped=$?
run=
cat stopped.log
[ "$stopped" = 130 ] || fail "backfill run exited $stopped after SIGTERM, expected 130 (stopped, checkpoint saved)"
echo "backfill run stopped by SIGTERM: exit 130; run again, it resumes at its checkpoint"
"$BACKFILL" run jobs/users_full_name.toml
kill -0 "$app" 2>/dev/null || fail "the application stopped during the backfill"

step "4. backfill verify: the CI gate in front of the contract migration (0 = go, 3 = rows pending)"
gate=0
"$BACKFILL" verify jobs/users_full_name.toml || gate=$?
[ "$gate" = 0 ] || fail "backfill verify exited $gate: the contract migration must not go ahead"
echo "verify: exit 0, the contract migration may go ahead"

step "5. contract: schema.ts gets .notNull(); drizzle-kit writes MODIFY COLUMN … NOT NULL; applied while the application writes"
cp steps/contract/schema.ts src/db/schema.ts
drizzle-kit generate --name contract_full_name
review drizzle/0002_contract_full_name.sql steps/contract/migration.sql
echo "first while a long transaction holds users: the ALTER TABLE waits lock_wait_timeout (5 s), then gives up"
node --import tsx src/hold.ts "$work/hold.ready" &
holder=$!
wait_until "the long transaction" "$holder" "reading users" test -e hold.ready
refused=0
tsx src/db/migrate.ts >refused.log 2>&1 || refused=$?
cat refused.log
[ "$refused" = 1 ] && grep -q 'error 1205' refused.log ||
  fail "the contract migration exited $refused behind the long transaction, expected 1 with error 1205 (lock wait timeout)"
kill -TERM "$holder"
wait "$holder" || fail "the long transaction exited $?"
holder=
echo "the long transaction is over; the same deploy again:"
tsx src/db/migrate.ts

step "6. stop the application, check every row"
kill -TERM "$app"
wait "$app" || fail "the application exited $?"
app=
tsx src/check.ts "$work/ledger.json" "$ROWS"

echo
echo "run.sh: the whole story passed in $((SECONDS - started)) s"
