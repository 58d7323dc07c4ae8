/**
 * Errors of the CLI itself; Sluice's own refusals arrive as @sluice/client errors.
 */

/**
 * What went wrong on the CLI's side: how it was called, the file it was given, the AWS
 * credentials it was to sign with, or a stored document that changed since it was read.
 */
export type CliErrorCode = 'usage' | 'file' | 'credentials' | 'conflict';

/** Base class of the CLI's errors. */
export class CliError extends Error {
  constructor(
    readonly code: CliErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The command line is wrong (a missing option, an unknown kind): exit 2, with the usage. */
export class UsageError extends CliError {
  constructor(message: string, options?: ErrorOptions) {
    super('usage', message, options);
  }
}

/** The file is unusable; `where` is its place in the file (`plans.free.limits[0]`). */
export class FileError extends CliError {
  constructor(
    readonly where: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super('file', where ? `${where}: ${message}` : message, options);
  }
}
