import type { App } from '../../src/app.ts';
import { issueKey } from '../../src/auth/index.ts';

/** A paid account with plenty of credits on `app`'s database; returns its raw API key. */
export async function paidKey(app: App, credits = 1_000_000, email = `paid-${Math.random().toString(36).slice(2)}@test.local`): Promise<string> {
  const account = await app.stores.accounts.create({ email, plan: 'paid', credits });
  return (await issueKey(app.stores.accounts, account.id, 'tests')).key;
}
