/**
 * Errors of the CLI itself; Sluice's own refusals arrive as @sluice/client errors.
 */

/** The file is unusable; `where` is its place in the file. */
export class FileError extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(where ? `${where}: ${message}` : message);
  }
}
