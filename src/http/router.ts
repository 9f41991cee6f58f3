/** Pure route table: method + path → handler and params, or why not (404 / 405). */
export type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

interface Compiled<H> {
  method: Method;
  pattern: string;
  regex: RegExp;
  keys: string[];
  handler: H;
}

export type RouteMatch<H> = { kind: 'found'; handler: H; params: Record<string, string>; pattern: string } | { kind: 'method-not-allowed'; allowed: Method[]; pattern: string } | { kind: 'not-found' };

/** `/api/v1/transcripts/:id/` → regex; a trailing slash is optional so both spellings work. */
function compile(pattern: string): { regex: RegExp; keys: string[] } {
  const keys: string[] = [];
  const body = pattern
    .replace(/\/+$/, '')
    .split('/')
    .map((part) => {
      if (part.startsWith(':')) {
        keys.push(part.slice(1));
        return '([^/]+)';
      }
      return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    })
    .join('/');
  return { regex: new RegExp(`^${body}/?$`), keys };
}

export class Router<H> {
  private readonly routes: Compiled<H>[] = [];

  add(method: Method, pattern: string, handler: H): this {
    this.routes.push({ method, pattern, handler, ...compile(pattern) });
    return this;
  }

  match(method: string, path: string): RouteMatch<H> {
    const allowed: Method[] = [];
    let pattern = '';
    for (const r of this.routes) {
      const m = r.regex.exec(path);
      if (!m) continue;
      if (r.method === method) {
        const params: Record<string, string> = {};
        r.keys.forEach((k, i) => {
          try {
            params[k] = decodeURIComponent(m[i + 1]);
          } catch {
            params[k] = m[i + 1];
          }
        });
        return { kind: 'found', handler: r.handler, params, pattern: r.pattern };
      }
      if (!allowed.includes(r.method)) allowed.push(r.method);
      pattern ||= r.pattern;
    }
    return allowed.length ? { kind: 'method-not-allowed', allowed, pattern } : { kind: 'not-found' };
  }
}
