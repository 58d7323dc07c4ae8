/**
 * The console's one way to the API: JSON to and from `/v1/…` on the page's own origin (the local
 * server, or `sluice console`'s signing proxy, which holds the credentials). A refusal becomes
 * an {@link ApiError} carrying the problem+json answer, `field` included.
 */

/** A problem+json answer, or what stands for one when the answer was not JSON. */
export interface Problem {
  readonly status: number;
  readonly code?: string;
  readonly title?: string;
  readonly detail?: string;
  readonly field?: string;
  /** Which part of AWS refused, as API Gateway's `x-amzn-errortype` names it. */
  readonly errorType?: string;
}

/** What the console says when the caller's role may not call a route. */
export const FORBIDDEN = 'Your role may not do this.';

/** What the console says when AWS refused its credentials or signature, not its role. */
export const CREDENTIALS_REFUSED =
  'AWS refused the console’s credentials (expired or not valid?): renew them and restart sluice console.';

/**
 * Whether a 403 without a Sluice code is AWS refusing who the caller is (expired or unknown
 * credentials, a bad signature) rather than what its role may do. API Gateway says which in
 * `x-amzn-errortype` and its message: a role's refusal is an `AccessDeniedException` saying the
 * caller "is not authorized" to invoke; every other 403 of AWS's is about the credentials.
 */
function credentialsRefused(problem: Problem): boolean {
  if (problem.status !== 403 || problem.code !== undefined) return false;
  const type = problem.errorType?.split(':')[0]?.trim();
  if (type !== undefined && type !== '' && type !== 'AccessDeniedException') return true;
  const said = problem.detail ?? '';
  return said !== '' && !/\bnot authorized\b/i.test(said);
}

export class ApiError extends Error {
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(messageOf(problem));
    this.name = 'ApiError';
    this.problem = problem;
  }

  /** Whether IAM (or an entity's `callers`) refused this caller, rather than Sluice the request. */
  get forbidden(): boolean {
    const { status, code } = this.problem;
    if (credentialsRefused(this.problem)) return false;
    return status === 403 && (code === undefined || code === 'caller_not_allowed');
  }
}

function messageOf(problem: Problem): string {
  if (credentialsRefused(problem))
    return `${CREDENTIALS_REFUSED} AWS said: ${problem.detail ?? problem.errorType}`;
  if (problem.status === 403 && (!problem.code || problem.code === 'caller_not_allowed'))
    return FORBIDDEN;
  const what = problem.detail ?? problem.title ?? `HTTP ${problem.status}`;
  return problem.code ? `${what} (${problem.code})` : what;
}

const text = (value: unknown): string | undefined =>
  typeof value === 'string' ? value : undefined;

function problemOf(status: number, body: unknown, errorType: string | null): Problem {
  const type = errorType ? { errorType } : {};
  if (typeof body !== 'object' || body === null) return { status, ...type };
  const b = body as Record<'code' | 'title' | 'detail' | 'field' | 'message', unknown>;
  const detail = text(b.detail) ?? text(b.message);
  return {
    status,
    ...type,
    ...(text(b.code) ? { code: text(b.code) as string } : {}),
    ...(text(b.title) ? { title: text(b.title) as string } : {}),
    ...(detail ? { detail } : {}),
    ...(text(b.field) ? { field: text(b.field) as string } : {}),
  };
}

/** A path segment from a name: every name is encoded, whatever it holds. */
export const segment = (name: string): string => encodeURIComponent(name);

/** A query string from the parameters that are set. */
export function query(params: Readonly<Record<string, string | undefined>>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params))
    if (value !== undefined && value !== '') search.set(name, value);
  const s = search.toString();
  return s ? `?${s}` : '';
}

/** An answer: its parsed body (null for a 204) and its entity tag, if it has one. */
export interface Answer<T> {
  readonly body: T;
  /** `ETag`, as sent (quoted): a stored document's, to send back as `If-Match`. */
  readonly etag: string | undefined;
}

/**
 * One call: resolves to the answer, throws {@link ApiError}. `headers` are a write's conditions
 * (`If-Match`, `If-None-Match`).
 */
export async function call<T>(
  method: string,
  path: string,
  body?: unknown,
  headers: Readonly<Record<string, string>> = {},
): Promise<Answer<T>> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  } catch {
    throw new ApiError({ status: 0, detail: 'Sluice cannot be reached' });
  }
  const raw = await res.text();
  let parsed: unknown = null;
  try {
    parsed = raw ? JSON.parse(raw) : null;
  } catch {
    // Not JSON: a short plain message is shown as it is; a page (a proxy's, a WAF's) is not.
    const plain = raw.length <= 200 && !raw.includes('<');
    parsed = {
      detail: plain && raw.trim() ? raw.trim() : `the answer was not JSON (HTTP ${res.status})`,
    };
  }
  if (!res.ok)
    throw new ApiError(problemOf(res.status, parsed, res.headers.get('x-amzn-errortype')));
  return { body: parsed as T, etag: res.headers.get('etag') ?? undefined };
}

/** One call: resolves to the parsed answer (null for a 204), throws {@link ApiError}. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  return (await call<T>(method, path, body)).body;
}

export const get = <T>(path: string): Promise<T> => api<T>('GET', path);
