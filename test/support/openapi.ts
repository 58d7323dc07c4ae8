/**
 * Answers checked against docs/openapi.json: the route (its path template, from a concrete path
 * as the server routes it), the status among those the operation lists, the content type, the
 * body against the response's schema ($refs into components resolved), and the headers it says
 * every such answer carries. A path no route has must answer 404 `not_found`; a method its path
 * does not take, 405 `method_not_allowed` (both problem+json).
 *
 * The shared HTTP helpers (api.ts `request` and `post`, admin.ts) check every answer with
 * {@link expectDescribed}; {@link validatingFetch} does the same for a client given a `fetch`.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { OPENAPI_FILE } from '../../scripts/openapi.js';

/** One answer as received. */
export interface Exchange {
  readonly method: string;
  /** A URL (its path is used) or a path, concrete (`/v1/admin/plans/free`) or a template. */
  readonly url: string;
  readonly status: number;
  /** Its headers, by name (any case). */
  readonly headers?: Headers | Readonly<Record<string, string | undefined>>;
  /** The body as text ('' when there is none). */
  readonly text: string;
}

interface Reference {
  readonly $ref: string;
}
interface HeaderObject {
  readonly required?: boolean;
}
interface ResponseObject {
  readonly headers?: Readonly<Record<string, HeaderObject | Reference>>;
  readonly content?: Readonly<Record<string, { readonly schema: unknown }>>;
}
interface OperationObject {
  readonly responses: Readonly<Record<string, ResponseObject | Reference>>;
}
interface OpenApi {
  readonly paths: Readonly<Record<string, Readonly<Record<string, OperationObject>>>>;
  readonly components: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
}

/** The document's id for Ajv: component $refs (`#/components/…`) resolve inside it. */
const ID = 'sluice-openapi';

const document = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as OpenApi;
// OpenAPI 3.1 schemas are JSON Schema 2020-12. Not strict: `description` and the like are
// annotations to Ajv, and the document is data here, not a schema of Ajv's own.
const ajv = new Ajv2020({ allErrors: true, strict: false });
ajv.addSchema({ $id: ID, components: document.components });
const validators = new Map<string, ValidateFunction>();

/** The object a `$ref` into the document names (one level: components refer no further). */
function resolve<T>(value: T | Reference): T {
  if (typeof value !== 'object' || value === null || !('$ref' in value)) return value;
  const found = value.$ref
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key], document);
  if (found === undefined) throw new Error(`docs/openapi.json: ${value.$ref} is not there`);
  return found as T;
}

function validatorOf(schema: unknown): ValidateFunction {
  const key = JSON.stringify(schema);
  let validate = validators.get(key);
  if (!validate) {
    // Its $refs (`#/components/…`) point into the document Ajv holds.
    validate = ajv.compile(JSON.parse(key.replaceAll('"#/components/', `"${ID}#/components/`)));
    validators.set(key, validate);
  }
  return validate;
}

/** The server routes on the decoded path (an encoded `/` is a `/`), as API Gateway does. */
function pathOf(url: string): string {
  const { pathname } = new URL(url, 'http://localhost');
  try {
    return decodeURIComponent(pathname);
  } catch {
    return pathname;
  }
}

/** The template a concrete path is an instance of (a `{name}` is one segment, not empty). */
function templateOf(path: string): string | undefined {
  if (Object.hasOwn(document.paths, path)) return path;
  const got = path.split('/');
  return Object.keys(document.paths).find((template) => {
    const want = template.split('/');
    return (
      want.length === got.length &&
      want.every((part, i) => part === got[i] || (/^\{\w+\}$/.test(part) && got[i] !== ''))
    );
  });
}

const headerOf = (headers: Exchange['headers'], name: string): string | undefined => {
  if (!headers) return undefined;
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name.toLowerCase());
  return key === undefined ? undefined : headers[key];
};

/** A problem+json answer of the edge's own (no operation to look it up in). */
const EDGE: Readonly<Record<number, ResponseObject>> = Object.fromEntries(
  [404, 405].map((status) => [
    status,
    {
      content: {
        'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } },
      },
    },
  ]),
);

/**
 * What is wrong with an answer by docs/openapi.json, or undefined when it is as described.
 */
export function mismatchOf(exchange: Exchange): string | undefined {
  const method = exchange.method.toUpperCase();
  const path = pathOf(exchange.url);
  const template = templateOf(path);
  const operation = template ? document.paths[template]?.[method.toLowerCase()] : undefined;
  const route = `${method} ${template ?? path}`;
  let described: ResponseObject | Reference | undefined;
  if (operation) described = operation.responses[String(exchange.status)];
  else {
    // No such route: the edge answers 404 (no path), or 405 (a path without this method).
    const expected = template ? 405 : 404;
    if (exchange.status !== expected)
      return `${route} is not a route of docs/openapi.json: it should answer ${expected}, not ${exchange.status}`;
    described = EDGE[expected];
  }
  if (!described)
    return `${route} answered ${exchange.status}, which docs/openapi.json does not list for it`;
  const response = resolve(described);
  const at = `${route} ${exchange.status}`;

  for (const [name, spec] of Object.entries(response.headers ?? {})) {
    if (resolve(spec).required && headerOf(exchange.headers, name) === undefined)
      return `${at}: no ${name} header, which docs/openapi.json says it carries`;
  }
  const contents = Object.entries(response.content ?? {});
  const [entry] = contents;
  if (!entry) {
    return exchange.text === ''
      ? undefined
      : `${at}: a body (${exchange.text.slice(0, 200)}) where docs/openapi.json describes none`;
  }
  const [mediaType, { schema }] = entry;
  const type = headerOf(exchange.headers, 'content-type') ?? '';
  if (!type.toLowerCase().startsWith(mediaType))
    return `${at}: content-type ${type || '(none)'}, not ${mediaType}`;
  let body: unknown;
  try {
    body = JSON.parse(exchange.text);
  } catch {
    return `${at}: the body is not JSON: ${exchange.text.slice(0, 200)}`;
  }
  const validate = validatorOf(schema);
  if (validate(body)) return undefined;
  const errors = (validate.errors ?? [])
    .map((e) => {
      const { additionalProperty, allowedValues } = e.params as {
        additionalProperty?: string;
        allowedValues?: unknown[];
      };
      const which = additionalProperty ?? allowedValues?.join(', ');
      return `body${e.instancePath} ${e.message}${which === undefined ? '' : ` (${which})`}`;
    })
    .join('; ');
  return `${at} does not match docs/openapi.json (${JSON.stringify(schema)}): ${errors}; the body: ${exchange.text.slice(0, 1_000)}`;
}

/** Fails (throws) when an answer is not as docs/openapi.json describes it. */
export function expectDescribed(exchange: Exchange): void {
  const mismatch = mismatchOf(exchange);
  if (mismatch !== undefined) throw new Error(`undescribed answer: ${mismatch}`);
}

/** A `fetch` that checks answers, and what it found wrong. */
export type ValidatingFetch = typeof fetch & {
  /** Every mismatch so far: a client may take the error thrown for it as a network error. */
  readonly mismatches: readonly string[];
};

/**
 * A `fetch` that checks every answer with {@link mismatchOf} before handing it on, for a client
 * given one (`new SluiceClient({ endpoint, fetch })`). A mismatch is thrown, and kept in
 * `mismatches`: a client retries (or fails open) on a `fetch` that throws, so a test checks
 * `mismatches` is empty after each test.
 */
export function validatingFetch(send: typeof fetch = fetch): ValidatingFetch {
  const mismatches: string[] = [];
  const checked = async (input: string | URL | Request, init?: RequestInit) => {
    const res = await send(input, init);
    const text = await res.clone().text();
    const url = input instanceof Request ? input.url : String(input);
    const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
    const mismatch = mismatchOf({ method, url, status: res.status, headers: res.headers, text });
    if (mismatch !== undefined) {
      mismatches.push(mismatch);
      throw new Error(`undescribed answer: ${mismatch}`);
    }
    return res;
  };
  return Object.assign(checked, { mismatches });
}
