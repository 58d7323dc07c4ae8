/**
 * Errors of @sluice/local: the embedded DynamoDB Local could not be brought up.
 */

/**
 * Why DynamoDB Local is not there: no Java to run it, it stopped, it never answered, its port
 * was in use, or no port was free.
 */
export type LocalErrorCode = 'java_missing' | 'exited' | 'not_ready' | 'port_in_use' | 'no_port';

/** Base class of the errors @sluice/local throws. */
export class LocalError extends Error {
  constructor(
    readonly code: LocalErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
