/**
 * The soak's clients: users calling Sluice through `@sluice/client` as an LLM platform would —
 * streamed calls (acquire, adjusts with growing totals, release with the finals), plain calls,
 * cancelled calls, fallbacks to a smaller model, a key with tight limits (refusals), a key whose
 * callers wait in line (`maxWaitMs`), a key under a shadow limit — each user with its own SDK
 * client, half failing open and half failing closed. Every SDK call is recorded with its
 * outcome, latency and whether the SDK said `degraded`; every lease a client received is
 * followed until a release settles it, retried after outages with the very same totals.
 */
import { createHash } from 'node:crypto';
import {
  type AcquireRequest,
  type AcquireResult,
  SluiceClient,
  SluiceRequestError,
  type Usage,
} from '@sluice/client';
import { BIG, FALLBACK, KEYS, QUEUE, SHADOW, SMALL, TIGHT } from './config.js';

/** A short stable name for a lease id (the tap names the leases it sees the same way). */
export const leaseKey = (token: string): string =>
  createHash('sha256').update(token).digest('base64url').slice(0, 22);

/** Usage as text with its metrics in order: two equal answers give equal texts. */
const canonical = (usage: Usage): string =>
  JSON.stringify(Object.entries(usage).sort(([a], [b]) => a.localeCompare(b)));

/** A seeded PRNG (mulberry32): the same seed, the same sequence of choices. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export type Op = 'acquire' | 'adjust' | 'release' | 'repeat_release' | 'available';
export type Kind = 'streamed' | 'plain' | 'cancel' | 'fallback' | 'tight' | 'queue' | 'shadow';

/** One SDK call. */
export interface CallRecord {
  readonly op: Op;
  readonly kind?: Kind;
  readonly user: number;
  readonly server: number;
  readonly mode: 'allow' | 'deny';
  readonly startMs: number;
  readonly endMs: number;
  /** allowed, reserved, fell_back, rate_limited, exceeds_capacity, unavailable, ok, error:<code>… */
  readonly outcome: string;
  readonly degraded: boolean;
  readonly lease?: string;
}

/** A lease a client received, followed until it is settled. */
export interface ClientLease {
  readonly key: string;
  readonly token: string;
  readonly kind: Kind;
  readonly entity: string;
  /** The resource admitted (a fallback's, when one was taken). */
  readonly resource: string;
  readonly estimate: Usage;
  readonly receivedMs: number;
  /** What the call settles with: totals, or null to give it all back; undefined until known. */
  final?: Usage | null;
  /** When a release answered 200 settled. */
  settledMs?: number;
  /** The usage that first settling answer reported. */
  answered?: Usage;
  releaseAttempts: number;
  /** Answers a lease should never get (a repeated release answering otherwise, a 409, …). */
  readonly problems: string[];
  /** A release of it is on its way (others wait rather than race it). */
  releasing?: boolean;
}

export interface WorkloadOptions {
  /** Each server's address (the taps in front of them). */
  readonly endpoints: readonly string[];
  readonly users: number;
  readonly timeoutMs: number;
  readonly seed: number;
  /** Shares of the mix, in order; the rest are `available` reads. */
  readonly mix?: Partial<Record<Kind, number>>;
}

const DEFAULT_MIX: Record<Kind, number> = {
  streamed: 0.3,
  plain: 0.2,
  cancel: 0.1,
  fallback: 0.12,
  tight: 0.1,
  queue: 0.08,
  shadow: 0.06,
};

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Totals as Sluice derives them from what a client sends. */
export function totalsOf(usage: Usage | null): Record<string, number> {
  if (usage === null) return { requests: 0, tokens: 0, input_tokens: 0, output_tokens: 0 };
  const input = usage.input_tokens ?? 0;
  const output = usage.output_tokens ?? 0;
  return { requests: 1, input_tokens: input, output_tokens: output, tokens: input + output };
}

interface User {
  readonly index: number;
  readonly home: number;
  readonly mode: 'allow' | 'deny';
  /** One client per server. */
  readonly clients: readonly SluiceClient[];
  readonly random: () => number;
}

export class Workload {
  readonly calls: CallRecord[] = [];
  readonly leases = new Map<string, ClientLease>();
  /** Shadow violations the answers reported (a shadow limit that would have refused). */
  shadowViolations = 0;
  #stopping = false;
  readonly #users: User[];
  readonly #mix: Record<Kind, number>;

  constructor(options: WorkloadOptions) {
    this.#mix = { ...DEFAULT_MIX, ...options.mix };
    this.#users = Array.from({ length: options.users }, (_, index) => {
      const mode = Math.floor(index / 2) % 2 === 0 ? 'allow' : 'deny';
      return {
        index,
        home: index % options.endpoints.length,
        mode,
        clients: options.endpoints.map(
          (endpoint) =>
            new SluiceClient({
              endpoint,
              timeoutMs: options.timeoutMs,
              retries: 2,
              onUnavailable: mode,
            }),
        ),
        random: seeded(options.seed * 7_919 + index),
      } satisfies User;
    });
  }

  /** Runs every user until {@link stop}; each finishes the call it is in. */
  async run(): Promise<void> {
    await Promise.all(this.#users.map((user) => this.#loop(user)));
  }

  /** No new calls from now on. */
  stop(): void {
    this.#stopping = true;
  }

  /** Leases not settled yet, of those whose final totals are known. */
  unsettled(): ClientLease[] {
    return [...this.leases.values()].filter(
      (l) =>
        l.settledMs === undefined &&
        l.final !== undefined &&
        !l.releasing &&
        !l.problems.includes('refused'),
    );
  }

  /** Releases every unsettled lease again (same totals) until all are settled or time is up. */
  async settleAll(deadlineMs: number, signal?: AbortSignal): Promise<void> {
    const [user] = this.#users;
    if (!user) return;
    for (let round = 0; Date.now() < deadlineMs && !signal?.aborted; round++) {
      const open = this.unsettled();
      if (open.length === 0) return;
      for (const lease of open) {
        if (Date.now() >= deadlineMs) return;
        await this.#release(user, (user.home + round) % user.clients.length, lease);
      }
      await sleep(300);
    }
  }

  async #loop(user: User): Promise<void> {
    let lastRetryMs = 0;
    while (!this.#stopping) {
      const due = Date.now() - lastRetryMs > 1_000 ? this.#pendingOf(user) : undefined;
      if (due) {
        lastRetryMs = Date.now();
        await this.#release(user, (user.home + due.releaseAttempts) % user.clients.length, due);
      }
      await this.#step(user);
      await sleep(40 + user.random() * 160);
    }
  }

  /** An unsettled lease this user's calls left behind (every user retries any). */
  #pendingOf(user: User): ClientLease | undefined {
    const open = this.unsettled();
    return open[Math.floor(user.random() * open.length)];
  }

  async #step(user: User): Promise<void> {
    const r = user.random();
    let acc = 0;
    for (const [kind, share] of Object.entries(this.#mix) as [Kind, number][]) {
      acc += share;
      if (r < acc) return this.#call(user, kind);
    }
    return this.#available(user);
  }

  async #call(user: User, kind: Kind): Promise<void> {
    const rnd = user.random;
    const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
    const key = KEYS[Math.floor(rnd() * KEYS.length)] as string;
    const input = int(100, 600);
    const output = int(100, 400);
    let request: AcquireRequest;
    switch (kind) {
      case 'fallback':
        request = {
          entity: FALLBACK,
          resource: BIG,
          usage: { input_tokens: input, output_tokens: output },
          fallback: [SMALL],
        };
        break;
      case 'tight':
        request = {
          entity: TIGHT,
          resource: SMALL,
          usage: { input_tokens: input, output_tokens: 100 },
        };
        break;
      case 'queue':
        request = {
          entity: QUEUE,
          resource: SMALL,
          usage: { input_tokens: 50, output_tokens: 50 },
          maxWaitMs: 1_500,
        };
        break;
      case 'shadow':
        request = {
          entity: SHADOW,
          resource: SMALL,
          usage: { input_tokens: int(300, 800), output_tokens: 200 },
        };
        break;
      default:
        request = {
          entity: key,
          resource: rnd() < 0.75 ? SMALL : BIG,
          usage: { input_tokens: input, output_tokens: output },
        };
    }
    const lease = await this.#acquire(user, kind, request);
    if (!lease) return;
    const estimatedIn = request.usage.input_tokens ?? 0;
    const estimatedOut = request.usage.output_tokens ?? 0;
    // The model call itself.
    switch (kind) {
      case 'streamed': {
        const finalOut = Math.round(estimatedOut * (0.5 + rnd()));
        for (let chunk = 1; chunk <= 3; chunk++) {
          await sleep(int(80, 200));
          await this.#adjust(user, lease, {
            input_tokens: estimatedIn,
            output_tokens: Math.round((finalOut * chunk) / 4),
          });
        }
        await sleep(int(50, 150));
        lease.final = { input_tokens: estimatedIn, output_tokens: finalOut };
        break;
      }
      case 'cancel':
        await sleep(int(20, 100));
        lease.final = null;
        break;
      default:
        await sleep(int(50, 300));
        lease.final = {
          input_tokens: estimatedIn,
          output_tokens: Math.round(estimatedOut * (0.6 + rnd() * 0.6)),
        };
    }
    await this.#release(user, user.home, lease);
  }

  #record(user: User, server: number, call: Omit<CallRecord, 'user' | 'server' | 'mode'>): void {
    this.calls.push({ ...call, user: user.index, server, mode: user.mode });
  }

  async #acquire(
    user: User,
    kind: Kind,
    request: AcquireRequest,
  ): Promise<ClientLease | undefined> {
    const client = user.clients[user.home] as SluiceClient;
    const startMs = Date.now();
    let result: AcquireResult;
    try {
      result = await client.acquire(request);
    } catch (error) {
      this.#record(user, user.home, {
        op: 'acquire',
        kind,
        startMs,
        endMs: Date.now(),
        outcome: `error:${(error as { code?: string }).code ?? String(error)}`,
        degraded: false,
      });
      return undefined;
    }
    const endMs = Date.now();
    if (!result.allowed || result.degraded) {
      this.#record(user, user.home, {
        op: 'acquire',
        kind,
        startMs,
        endMs,
        outcome: result.allowed ? 'allowed_degraded' : result.code,
        degraded: result.degraded,
      });
      return undefined;
    }
    this.shadowViolations += result.shadowViolations?.length ?? 0;
    const key = leaseKey(result.leaseId);
    this.#record(user, user.home, {
      op: 'acquire',
      kind,
      startMs,
      endMs,
      outcome: result.fellBack ? 'fell_back' : result.waitMs > 0 ? 'reserved' : 'allowed',
      degraded: false,
      lease: key,
    });
    const lease: ClientLease = {
      key,
      token: result.leaseId,
      kind,
      entity: request.entity,
      resource: result.resource,
      estimate: request.usage,
      receivedMs: endMs,
      releaseAttempts: 0,
      problems: [],
    };
    this.leases.set(key, lease);
    if (result.waitMs > 0) await sleep(result.waitMs);
    return lease;
  }

  async #adjust(user: User, lease: ClientLease, usage: Usage): Promise<void> {
    const startMs = Date.now();
    let outcome: string;
    let degraded = false;
    try {
      const answer = await (user.clients[user.home] as SluiceClient).adjust(lease.token, usage);
      degraded = answer.degraded;
      outcome = answer.degraded ? 'unavailable' : answer.settled ? 'settled?' : 'ok';
    } catch (error) {
      outcome = `error:${(error as { code?: string }).code ?? String(error)}`;
    }
    this.#record(user, user.home, {
      op: 'adjust',
      startMs,
      endMs: Date.now(),
      outcome,
      degraded,
      lease: lease.key,
    });
  }

  /** One release of `lease` with its final totals, through server `server`. */
  async #release(user: User, server: number, lease: ClientLease): Promise<void> {
    if (lease.final === undefined || lease.settledMs !== undefined || lease.releasing) return;
    const client = user.clients[server] as SluiceClient;
    const usage = lease.final ?? undefined;
    lease.releaseAttempts++;
    lease.releasing = true;
    const startMs = Date.now();
    let outcome: string;
    let degraded = false;
    try {
      const answer = await client.release(lease.token, usage);
      degraded = answer.degraded;
      if (answer.degraded) outcome = 'unavailable';
      else if (!answer.settled) {
        outcome = 'not_settled';
        lease.problems.push('a release answered 200 with settled: false');
      } else {
        outcome = 'settled';
        lease.settledMs = Date.now();
        lease.answered = answer.usage;
      }
    } catch (error) {
      const code =
        error instanceof SluiceRequestError ? error.code : (error as { code?: string }).code;
      outcome = `error:${code ?? String(error)}`;
      lease.problems.push(`a release answered ${outcome}`, 'refused');
    }
    lease.releasing = false;
    this.#record(user, server, {
      op: 'release',
      startMs,
      endMs: Date.now(),
      outcome,
      degraded,
      lease: lease.key,
    });
    // The same release again, sometimes from the other server: it must answer as the first did.
    if (outcome === 'settled' && user.random() < 0.2)
      await this.#repeat(user, (server + 1) % user.clients.length, lease, usage);
  }

  async #repeat(user: User, server: number, lease: ClientLease, usage: Usage | undefined) {
    const startMs = Date.now();
    let outcome: string;
    let degraded = false;
    try {
      const answer = await (user.clients[server] as SluiceClient).release(lease.token, usage);
      degraded = answer.degraded;
      outcome = answer.degraded ? 'unavailable' : 'settled';
      if (
        !answer.degraded &&
        (!answer.settled || canonical(answer.usage) !== canonical(lease.answered ?? {}))
      ) {
        outcome = 'different';
        lease.problems.push(
          `a repeated release answered settled=${answer.settled} ${JSON.stringify(answer.usage)}, the first ${JSON.stringify(lease.answered)}`,
        );
      }
    } catch (error) {
      const code =
        error instanceof SluiceRequestError ? error.code : (error as { code?: string }).code;
      outcome = `error:${code ?? String(error)}`;
      lease.problems.push(`a repeated release answered ${outcome}`);
    }
    this.#record(user, server, {
      op: 'repeat_release',
      startMs,
      endMs: Date.now(),
      outcome,
      degraded,
      lease: lease.key,
    });
  }

  async #available(user: User): Promise<void> {
    const startMs = Date.now();
    let outcome: string;
    let degraded = false;
    try {
      const answer = await (user.clients[user.home] as SluiceClient).available({
        entity: KEYS[Math.floor(user.random() * KEYS.length)] as string,
        resource: SMALL,
        usage: { input_tokens: 300, output_tokens: 200 },
      });
      degraded = answer.degraded;
      outcome = answer.degraded ? 'unavailable' : 'ok';
    } catch (error) {
      outcome = `error:${(error as { code?: string }).code ?? String(error)}`;
    }
    this.#record(user, user.home, {
      op: 'available',
      startMs,
      endMs: Date.now(),
      outcome,
      degraded,
    });
  }
}
