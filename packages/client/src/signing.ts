/**
 * `@sluice/client/signing`: SigV4 for API Gateway (`execute-api`), shared by the SDK's transport
 * (`SluiceClient`, `SluiceAdmin`) and `sluice console`'s proxy, which signs the page's calls with
 * it: the caller's credentials sign every request, except to an http://localhost endpoint
 * without credentials (the local server has no IAM).
 */
import { Sha256 } from '@aws-crypto/sha256-js';
import { defaultProvider } from '@aws-sdk/credential-provider-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { untilAborted } from './abort.js';
import { SluiceClientError } from './errors.js';

/** AWS credentials, or a function that provides them (the AWS SDK's providers fit). */
export type Credentials =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  | (() => Promise<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>);

function isLocal(url: URL): boolean {
  return url.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}

/** Parses the endpoint, naming it when it is not a URL. */
export function endpointUrl(endpoint: string): URL {
  try {
    return new URL(endpoint);
  } catch {
    throw new SluiceClientError('invalid_option', `endpoint is not a URL: ${endpoint}`);
  }
}

/** Signs requests to `base`, or (local endpoint, no credentials) leaves them unsigned. */
export class RequestSigner {
  readonly #signer: SignatureV4 | undefined;

  constructor(
    base: URL,
    options: { region?: string | undefined; credentials?: Credentials | undefined },
  ) {
    if (isLocal(base) && !options.credentials) return;
    const region =
      options.region ??
      /\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$/.exec(base.hostname)?.[1] ??
      process.env.AWS_REGION;
    if (!region) throw new SluiceClientError('invalid_option', 'region: set it, or AWS_REGION');
    this.#signer = new SignatureV4({
      service: 'execute-api',
      region,
      credentials: options.credentials ?? defaultProvider(),
      sha256: Sha256,
    });
  }

  /**
   * The headers to send: content type, host, and the signature when signing. Finding the
   * credentials may take long (STS, SSO, the instance metadata service) or never end: with a
   * `signal`, the signing rejects with its reason when it aborts first.
   */
  async headers(
    method: string,
    url: URL,
    payload: string | undefined,
    signal?: AbortSignal,
  ): Promise<Record<string, string>> {
    const headers: Record<string, string> = { host: url.host };
    if (payload !== undefined) headers['content-type'] = 'application/json';
    if (!this.#signer) return headers;
    const query = Object.fromEntries(url.searchParams);
    const signing = this.#signer.sign({
      method,
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      ...(Object.keys(query).length ? { query } : {}),
      headers,
      ...(payload !== undefined ? { body: payload } : {}),
    });
    return (await (signal ? untilAborted(signing, signal) : signing)).headers;
  }
}
