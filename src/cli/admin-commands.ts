/**
 * The admin commands over the stores: one function for both ways in, the admin CLI working on the
 * database itself (PostgreSQL, or an embedded database no server owns) and a running server answering
 * the CLI over its admin channel (src/cli/admin-channel.ts). All account logic stays in src/store.
 */
import { parseArgs } from 'node:util';
import { issueKey } from '../auth/keys.ts';
import { PLANS, type Account, type Plan, type Stores } from '../store/index.ts';
import { errorKind } from '../errors.ts';
import { UsageError } from './usage-error.ts';

export const ADMIN_USAGE = `Usage: npm run admin -- <command> [options]

  create-account --email EMAIL [--plan free|paid] [--credits N] [--name NAME] [--no-key]
  set-plan       (--email EMAIL | --account ID) --plan free|paid
  add-credits    (--email EMAIL | --account ID) --credits N   (remove: --credits=-N)
  issue-key      (--email EMAIL | --account ID) [--name NAME]
  revoke-key     (--email EMAIL | --account ID) --key KEY_ID
  list-accounts  [--json]

The raw API key is printed once. Database: DATABASE_URL, or the embedded one in DATA_DIR/db
(while a server runs on it, the command goes to that server over DATA_DIR/run/owner.sock).`;

export { UsageError };

export interface AdminIo {
  out: (line: string) => void;
}

function accountLine(a: Account): string {
  return `${a.id}  ${a.email}  plan=${a.plan}  credits=${a.credits}${a.name ? `  name=${JSON.stringify(a.name)}` : ''}`;
}

function int(name: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || v === '' || !Number.isInteger(n)) throw new UsageError(`--${name} must be an integer (got ${v === undefined ? 'nothing' : `'${v}'`})`);
  return n;
}

function plan(v: string | undefined): Plan {
  if (!PLANS.includes(v as Plan)) throw new UsageError(`--plan must be one of ${PLANS.join(', ')} (got ${v === undefined ? 'nothing' : `'${v}'`})`);
  return v as Plan;
}

/** Runs one admin command against the stores; throws UsageError for bad arguments. */
export async function runAdmin(argv: string[], stores: Stores, io: AdminIo): Promise<void> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      email: { type: 'string' },
      account: { type: 'string' },
      plan: { type: 'string' },
      credits: { type: 'string' },
      name: { type: 'string' },
      key: { type: 'string' },
      'no-key': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });

  const target = async (): Promise<Account> => {
    if (!values.email && !values.account) throw new UsageError('name the account with --email EMAIL or --account ID');
    const a = values.account ? await stores.accounts.get(values.account) : await stores.accounts.findByEmail(values.email!);
    if (!a) throw new UsageError(`no account ${values.account ?? values.email}`);
    return a;
  };
  const printKey = (key: string, id: string) => {
    io.out(`api key (shown once, store it now): ${key}`);
    io.out(`key id: ${id}`);
  };

  switch (command) {
    case 'create-account': {
      if (!values.email || !/^[^\s@]+@[^\s@]+$/.test(values.email)) throw new UsageError('--email must be an email address');
      const a = await stores.accounts.create({
        email: values.email,
        plan: values.plan === undefined ? 'free' : plan(values.plan),
        credits: values.credits === undefined ? 0 : Math.max(0, int('credits', values.credits)),
        name: values.name,
      });
      io.out(`created ${accountLine(a)}`);
      if (!values['no-key']) {
        const { key, record } = await issueKey(stores.accounts, a.id, values.name ?? 'admin');
        printKey(key, record.id);
      }
      return;
    }
    case 'set-plan': {
      const p = plan(values.plan);
      const a = await stores.accounts.setPlan((await target()).id, p);
      io.out(`updated ${accountLine(a!)}`);
      return;
    }
    case 'add-credits': {
      const n = int('credits', values.credits);
      const a = await stores.accounts.addCredits((await target()).id, n);
      io.out(`updated ${accountLine(a!)}`);
      return;
    }
    case 'issue-key': {
      const a = await target();
      const { key, record } = await issueKey(stores.accounts, a.id, values.name ?? 'admin');
      io.out(`new key for ${a.email}`);
      printKey(key, record.id);
      return;
    }
    case 'revoke-key': {
      const a = await target();
      if (!values.key) throw new UsageError('--key KEY_ID is required (see the key ids in GET /api/v1/keys/)');
      if (!(await stores.accounts.revokeKey(a.id, values.key))) throw new UsageError(`account ${a.email} has no key ${values.key}`);
      io.out(`revoked key ${values.key} of ${a.email}`);
      return;
    }
    case 'list-accounts': {
      const all = await stores.accounts.list();
      if (values.json) {
        io.out(JSON.stringify(all.map((a) => ({ id: a.id, email: a.email, name: a.name, plan: a.plan, credits: a.credits, created_at: a.createdAt.toISOString() }))));
      } else if (all.length === 0) io.out('no accounts');
      else all.forEach((a) => io.out(accountLine(a)));
      return;
    }
    default:
      throw new UsageError(command ? `unknown command '${command}'` : 'no command given');
  }
}

/** What one admin command printed and its exit status (0 done, 1 failed, 2 bad arguments). */
export interface AdminResult {
  code: number;
  stdout: string[];
  stderr: string[];
}

/** Runs one admin command and captures its output and exit status, errors included. */
export async function executeAdmin(argv: string[], stores: Stores): Promise<AdminResult> {
  const stdout: string[] = [];
  try {
    await runAdmin(argv, stores, { out: (l) => stdout.push(l) });
    return { code: 0, stdout, stderr: [] };
  } catch (err) {
    const e = err as Error & { code?: string };
    if (err instanceof UsageError || e.code?.startsWith('ERR_PARSE_ARGS') || errorKind(err) === 'conflict') {
      return { code: 2, stdout, stderr: [`error: ${e.message}`, '', ADMIN_USAGE] };
    }
    return { code: 1, stdout, stderr: [`error: ${e.message}`] };
  }
}
