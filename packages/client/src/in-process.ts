/**
 * `@sluice/client/in-process`: Sluice inside the caller's own process (its Lambda), straight
 * against the Sluice table with the caller's own AWS credentials: no HTTP API and no Sluice
 * function in between. The client is the HTTP `SluiceClient` (same methods, retries, answers and
 * errors); only where its requests go differs: each is answered by the route's own handler
 * (`@sluice/lambdas`, an optional peer dependency this entry alone needs), called here. Leases,
 * usage history and stored configuration are the deployed API's: one table.
 */
import { type InProcessOptions, inProcess } from '@sluice/lambdas/in-process';
import { SluiceClient as HttpSluiceClient, SENDER, type SluiceClientOptions } from './client.js';
import { SluiceClientError } from './errors.js';
import { type Answer, answerFrom, type Sender } from './transport.js';

export type { InProcessOptions } from '@sluice/lambdas/in-process';

/** How the in-process {@link SluiceClient} reaches the table and behaves when it cannot. */
export interface SluiceInProcessOptions
  extends InProcessOptions,
    Omit<SluiceClientOptions, 'endpoint' | 'region' | 'credentials' | 'fetch'> {}

/** Where messages say requests went. */
const ORIGIN = 'in-process';

/** Sends each request to its route's handler in this process, within the call's deadline. */
function inProcessSender(
  options: InProcessOptions,
): Sender & { readonly flush: () => Promise<void> } {
  let sluice: ReturnType<typeof inProcess>;
  try {
    sluice = inProcess(options);
  } catch (error) {
    throw new SluiceClientError(
      'invalid_option',
      error instanceof Error ? error.message : String(error),
      undefined,
      { cause: error },
    );
  }
  return {
    origin: ORIGIN,
    flush: () => sluice.flush(),
    send(method, path, body, timeoutMs): Promise<Answer> {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      let timer: ReturnType<typeof setTimeout> | undefined;
      // The handler answers 503 before the deadline; this is for a handler that does not.
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within the timeout')), timeoutMs);
      });
      const answered = sluice.call(method, path, payload, timeoutMs).then(
        (a) => answerFrom({ status: a.status, text: a.body, headers: a.headers }),
        (error: unknown) => {
          // The caller's setup (its role, its table): thrown, never retried nor failed open.
          if ((error as { code?: unknown }).code === 'setup_invalid')
            throw new SluiceClientError('setup_invalid', (error as Error).message, undefined, {
              cause: error,
            });
          throw error;
        },
      );
      return Promise.race([answered, late]).finally(() => clearTimeout(timer));
    },
  };
}

/**
 * The Sluice SDK, in process: `new SluiceClient({ table: 'sluice' })` decides with one DynamoDB
 * round trip per scope, from the caller's own function, whose role needs the construct's
 * `grantInProcess`. Everything else is as `@sluice/client`'s `SluiceClient`.
 *
 * @example
 * import { SluiceClient } from '@sluice/client/in-process';
 * const sluice = new SluiceClient({ table: process.env.SLUICE_TABLE! });
 * const lease = await sluice.acquire({ entity: 'key-123', resource: 'gpt-4o', usage: { tokens: 2_000 } });
 */
export class SluiceClient extends HttpSluiceClient {
  readonly #flush: () => Promise<void>;

  constructor(options: SluiceInProcessOptions) {
    const sender = inProcessSender(options);
    super({ ...options, endpoint: `http://${ORIGIN}`, [SENDER]: sender } as SluiceClientOptions);
    this.#flush = sender.flush;
  }

  /**
   * Writes the refusals gathered for usage history now. They are written every
   * `denialFlushMs` (5 s) and when the process runs out of work; a Lambda handler that wants
   * them counted before its process may be frozen awaits this.
   */
  flush(): Promise<void> {
    return this.#flush();
  }
}
