/**
 * `sluice`: plan and apply a declarative file against the admin API, read stored configuration,
 * the audit trail, usage history, top entities and budget alerts; serve the console for a
 * deployed stack (console.ts). Requests are SigV4-signed with the caller's AWS credentials (the
 * SDK's signer), except to a local server without --profile. This module parses the command
 * line, runs the command and turns errors into exit codes; the commands themselves are in
 * commands.ts.
 */

import { SluiceAdmin, SluiceClientError } from '@sluice/client';
import { COMMANDS, parseCommand, profileCredentials } from './commands.js';
import { CliError, UsageError } from './errors.js';

const USAGE = `sluice — Sluice's admin CLI

  sluice plan  -f sluice.yaml [--prune]   what apply would change
  sluice apply -f sluice.yaml [--prune]   apply the file (--prune also deletes what it omits)
  sluice get plan|entity|resource [NAME]  one document, or all of a kind
  sluice get settings
  sluice audit [--limit N] [--entity E]   admin changes, newest first (of E only)
  sluice usage ENTITY [--by hour|day|month] [--resource R] [--from ISO] [--to ISO]
                                          its usage history (costs in USD)
  sluice top [--period day|month] [--date YYYY-MM-DD] [--metric M] [--by denied] [--limit N]
                                          the entities that used (or were refused) most
  sluice alerts [--limit N] [--entity E]  budget alerts, newest first (of E only)
  sluice rotate-key                       a new lease signing key (the old one still
                                          verifies the leases it signed until they expire)
  sluice console --endpoint URL [--port N]
                                          the console for a deployed stack on 127.0.0.1
                                          (default port 3100), its calls signed with your
                                          AWS credentials; Ctrl-C stops it

Options:
  --endpoint URL   the Sluice API (default: $SLUICE_URL, else http://127.0.0.1:3000)
  --region REGION  for SigV4 (default: from the endpoint, else $AWS_REGION)
  --profile NAME   sign with this AWS profile's credentials (default: the AWS SDK's chain)
  -h, --help`;

/** Runs the CLI; resolves to the exit code. */
export async function main(
  argv: readonly string[],
  out: (line: string) => void = (line) => console.log(line),
  err: (line: string) => void = (line) => console.error(line),
): Promise<number> {
  let parsed: ReturnType<typeof parseCommand>;
  try {
    parsed = parseCommand(argv);
  } catch (error) {
    err(`error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { command, args, values } = parsed;
  if (values.help || !command) {
    out(USAGE);
    return command || values.help ? 0 : 2;
  }
  const endpoint = values.endpoint ?? process.env.SLUICE_URL ?? 'http://127.0.0.1:3000';
  try {
    const credentials = profileCredentials(values);
    const admin = new SluiceAdmin({
      endpoint,
      ...(values.region ? { region: values.region } : {}),
      ...(credentials ? { credentials } : {}),
    });
    const run = COMMANDS.get(command);
    if (!run) {
      err(`unknown command ${command}\n\n${USAGE}`);
      return 2;
    }
    // A filter no command but these reads: elsewhere it would look applied and be ignored.
    if (values.entity !== undefined && command !== 'audit' && command !== 'alerts')
      throw new UsageError(`--entity is for audit and alerts, not ${command}`);
    return await run({ command, args, values, endpoint, admin, out, err });
  } catch (error) {
    return failed(error, err);
  }
}

/**
 * The exit code of a command that threw, its message printed: 2 for a wrong command line (with
 * the usage), 1 for the CLI's other errors and Sluice's refusals. Anything else is a bug: thrown.
 */
function failed(error: unknown, err: (line: string) => void): number {
  if (error instanceof UsageError) {
    err(`error: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (error instanceof CliError) {
    err(`error: ${error.message}`);
    return 1;
  }
  if (error instanceof SluiceClientError) {
    const field = 'field' in error && error.field ? ` (field ${String(error.field)})` : '';
    const who = error.status ? `Sluice answered ${error.status} ` : '';
    err(`error: ${who}${error.code}: ${error.message}${field}`);
    return 1;
  }
  throw error;
}
