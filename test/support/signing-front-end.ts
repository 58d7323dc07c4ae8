/**
 * API Gateway's IAM check in front of the local server, which checks no signature itself: a
 * server on 127.0.0.1 that recomputes each request's SigV4 signature (execute-api, one region,
 * the credentials it is given) from what it received, refuses a request unsigned, signed
 * differently or signed more than five minutes ago with API Gateway's 403, refuses what the
 * caller's "role" may not do (`denies`) with its 403 too, and forwards the rest (method, path,
 * body and content type) to the local server.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';

/** One request as the front end received it, and what it answered. */
export interface Received {
  readonly method: string;
  /** Path and query, as received (after `meddle`). */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  status?: number;
  /** Why it was refused, when it was. */
  refused?: string;
}

export interface FrontEndOptions {
  /** The local server requests are forwarded to. */
  readonly upstream: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** What the caller's role may not do: true refuses it as IAM would (AccessDeniedException). */
  readonly denies?: (method: string, path: string) => boolean;
  /** A change on the way, before the check (a tampered path): the path as it arrives. */
  readonly meddle?: (path: string) => string;
}

export interface FrontEnd {
  readonly url: string;
  readonly received: Received[];
  close(): Promise<void>;
}

const FIVE_MINUTES_MS = 5 * 60_000;

/** Why the request's signature does not hold, or undefined when it does. */
async function signatureProblem(
  one: Received,
  options: FrontEndOptions,
): Promise<string | undefined> {
  const authorization = String(one.headers.authorization ?? '');
  if (!authorization.startsWith('AWS4-HMAC-SHA256 ')) return 'Missing Authentication Token';
  const signedNames = /SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(';') ?? [];
  const amzDate = String(one.headers['x-amz-date'] ?? '');
  const signingDate = new Date(
    amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
  );
  if (!signedNames.includes('host') || Number.isNaN(signingDate.getTime()))
    return 'Authorization header requires existence of the host header and a date';
  if (Math.abs(Date.now() - signingDate.getTime()) > FIVE_MINUTES_MS) return 'Signature expired';
  // The signer takes a payload hash in this header as given: the body must have that hash.
  const claimed = one.headers['x-amz-content-sha256'];
  if (claimed !== undefined && claimed !== createHash('sha256').update(one.body).digest('hex'))
    return 'The provided x-amz-content-sha256 header does not match what was computed.';
  const url = new URL(one.path, `http://${one.headers.host}`);
  const query = Object.fromEntries(url.searchParams);
  const again = await new SignatureV4({
    service: 'execute-api',
    region: options.region,
    credentials: options.credentials,
    sha256: Sha256,
  }).sign(
    {
      method: one.method,
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: url.pathname,
      ...(Object.keys(query).length ? { query } : {}),
      headers: Object.fromEntries(signedNames.map((n) => [n, String(one.headers[n] ?? '')])),
      ...(one.body ? { body: one.body } : {}),
    },
    { signingDate },
  );
  if (again.headers.authorization === authorization) return undefined;
  return 'The request signature we calculated does not match the signature you provided.';
}

/** Headers of one connection, not passed on. */
const HOP_BY_HOP = /^(host|connection|keep-alive|content-length|transfer-encoding|te|upgrade)$/;

/** Starts the front end on 127.0.0.1. */
export async function startSigningFrontEnd(options: FrontEndOptions): Promise<FrontEnd> {
  const received: Received[] = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const path = options.meddle ? options.meddle(req.url ?? '/') : (req.url ?? '/');
    const one: Received = {
      method: req.method ?? '',
      path,
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
    };
    received.push(one);
    const refuse = (type: string, message: string) => {
      one.status = 403;
      one.refused = message;
      res.writeHead(403, { 'content-type': 'application/json', 'x-amzn-errortype': type });
      res.end(JSON.stringify({ message }));
    };
    const problem = await signatureProblem(one, options);
    if (problem) return refuse('InvalidSignatureException', problem);
    if (options.denies?.(one.method, new URL(path, 'http://x').pathname))
      return refuse(
        'AccessDeniedException',
        `User: arn:aws:sts::123456789012:assumed-role/console-test/operator is not authorized to perform: execute-api:Invoke on resource: ${one.method}${path}`,
      );
    // As API Gateway does, the request's headers go on to the integration and its answer's come
    // back, less those of the connection.
    const sent = Object.entries(req.headers).flatMap(([name, value]) =>
      typeof value === 'string' && !HOP_BY_HOP.test(name)
        ? [[name, value] as [string, string]]
        : [],
    );
    const answer = await fetch(new URL(path, options.upstream), {
      method: one.method,
      headers: sent,
      ...(one.body ? { body: one.body } : {}),
    });
    one.status = answer.status;
    const back: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      if (!HOP_BY_HOP.test(name)) back[name] = value;
    });
    res.writeHead(answer.status, back);
    res.end(Buffer.from(await answer.arrayBuffer()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
