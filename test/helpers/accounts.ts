import type { App } from '../../src/app.ts';
import { issueKey } from '../../src/auth/index.ts';
import type { Stores } from '../../src/store/index.ts';

/** A paid account with plenty of credits on `app`'s database; returns its raw API key. */
export async function paidKey(app: App, credits = 1_000_000, email = `paid-${Math.random().toString(36).slice(2)}@test.local`): Promise<string> {
  const account = await app.stores.accounts.create({ email, plan: 'paid', credits });
  return (await issueKey(app.stores.accounts, account.id, 'tests')).key;
}

/** A paid account on `stores` with a key, and a JSON POST to `base` that sends it as `Authorization: Bearer`. */
export async function paidUser(stores: Pick<Stores, 'accounts'>, base: string, email: string, credits = 100) {
  const account = await stores.accounts.create({ email, plan: 'paid', credits });
  const { key } = await issueKey(stores.accounts, account.id, 'test');
  const post = (path: string, body: unknown) =>
    fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { account, post };
}
