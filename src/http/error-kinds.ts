// PROVISIONAL (replaced by the errors branch at merge).
import { errorKind, type ErrorKind } from '../errors.ts';
const CLOSE: Record<ErrorKind, number> = { invalid: 1007, unauthenticated: 1008, payment_required: 1008, forbidden: 1008, not_found: 1008, conflict: 1008, too_large: 1009, unsupported_media: 1003, rate_limited: 1013, cancelled: 1000, upstream: 1011, unavailable: 1013, internal: 1011 };
export function closeCodeOf(err: unknown): number {
  return CLOSE[errorKind(err)];
}
