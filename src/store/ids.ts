const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Ids are uuids: anything else cannot exist (and must not reach PostgreSQL as a syntax error). */
export function isUuid(s: string): boolean {
  return UUID.test(s);
}
