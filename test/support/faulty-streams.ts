/**
 * The real DynamoDB Streams client, with faults a test schedules: a chosen command's next call is
 * held (so the test knows where the reader stands) until the test lets it go, and then throws
 * the SDK's own exception, as the service would (or, with no error, goes on to DynamoDB Local).
 * As the service does, an iterator that a GetRecords fault declared dead (expired, trimmed, of a
 * stream gone) stays dead: every later read with it fails the same way. Every other call goes to
 * DynamoDB Local.
 */
import {
  DescribeStreamCommand,
  type DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
} from '@aws-sdk/client-dynamodb-streams';
import { localStreams } from './streams.js';

type Sender = Pick<DynamoDBStreamsClient, 'send'>;

const COMMANDS = {
  DescribeStream: DescribeStreamCommand,
  GetShardIterator: GetShardIteratorCommand,
  GetRecords: GetRecordsCommand,
} as const;
export type StreamsCommand = keyof typeof COMMANDS;

/** A scheduled fault. */
export interface Fault {
  /** Whether a call has reached it and is being held. */
  readonly held: boolean;
  /** Whether it has thrown. */
  readonly thrown: boolean;
  /** Lets the held call go (it throws); a fault not yet reached does not wait when it is. */
  release(): void;
}

interface Scheduled {
  readonly command: StreamsCommand;
  readonly error: (() => Error) | undefined;
  readonly matches: (input: Record<string, unknown>) => boolean;
  readonly killsIterator: boolean;
  state: { held: boolean; thrown: boolean; released: boolean; resume?: () => void };
}

export class FaultyStreams implements Sender {
  readonly real: DynamoDBStreamsClient;
  readonly #scheduled: Scheduled[] = [];
  readonly #always = new Map<StreamsCommand, () => Error>();
  /** Iterators a fault killed, and what reading with them throws. */
  readonly #dead = new Map<string, () => Error>();

  constructor(endpoint: string) {
    this.real = localStreams(endpoint);
  }

  /**
   * The next call of `command` (whose input `matches`) is held until released, then throws
   * `error()` (none: is sent). A GetRecords fault kills the iterator it was called with, unless
   * `killsIterator` is false (a network error leaves it as it was).
   */
  fail(
    command: StreamsCommand,
    error: (() => Error) | undefined,
    matches: (input: Record<string, unknown>) => boolean = () => true,
    killsIterator = true,
  ): Fault {
    const state: Scheduled['state'] = { held: false, thrown: false, released: false };
    this.#scheduled.push({ command, error, matches, killsIterator, state });
    return {
      get held() {
        return state.held;
      },
      get thrown() {
        return state.thrown;
      },
      release: () => {
        state.released = true;
        state.resume?.();
      },
    };
  }

  /** Every call of `command` throws `error()`, until the returned function is called. */
  failAll(command: StreamsCommand, error: () => Error): () => void {
    this.#always.set(command, error);
    return () => this.#always.delete(command);
  }

  readonly send = (async (command: object, options?: object) => {
    const name = (Object.keys(COMMANDS) as StreamsCommand[]).find(
      (key) => command instanceof COMMANDS[key],
    );
    const input = (command as { input: Record<string, unknown> }).input;
    const always = name ? this.#always.get(name) : undefined;
    if (always) throw always();
    const dead = this.#dead.get(String(input.ShardIterator));
    if (name === 'GetRecords' && dead) throw dead();
    const at = this.#scheduled.findIndex((f) => f.command === name && f.matches(input));
    const fault = this.#scheduled[at];
    if (fault) {
      this.#scheduled.splice(at, 1);
      fault.state.held = true;
      if (!fault.state.released)
        await new Promise<void>((resolve) => {
          fault.state.resume = resolve;
        });
      if (fault.error) {
        fault.state.thrown = true;
        if (name === 'GetRecords' && fault.killsIterator)
          this.#dead.set(String(input.ShardIterator), fault.error);
        throw fault.error();
      }
    }
    return (this.real.send as (c: object, o?: object) => Promise<unknown>)(command, options);
  }) as Sender['send'];
}
