import { DomainError } from '../errors.ts';

/**
 * No valid credentials. `challenge` is the Bearer challenge (RFC 6750 §3) the HTTP edge sends in
 * WWW-Authenticate: plain `Bearer` when no or a malformed key was sent, `error="invalid_token"`
 * when the key itself is unknown or revoked.
 */
export class UnauthenticatedError extends DomainError {
  constructor(
    message: string,
    readonly challenge = 'Bearer',
  ) {
    super('unauthenticated', message);
    this.name = 'UnauthenticatedError';
  }
}
