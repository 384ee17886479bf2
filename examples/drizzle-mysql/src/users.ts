// What a user row should hold: the names of the users that were there before the change, and
// the full name that the application (dual write) and the backfill job both derive from the
// first and last name (jobs/users_full_name.toml: `CONCAT(first_name, ' ', last_name)`).

/** The user with id `id` among those that were there before the change. */
export function seededUser(id: number) {
  return { id, email: `user${id}@example.com`, firstName: `First${id}`, lastName: `Last${id}` };
}

/** The full name of a user, exactly as the backfill job's SQL expression computes it. */
export function fullName(firstName: string, lastName: string) {
  return `${firstName} ${lastName}`;
}
