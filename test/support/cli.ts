/** The CLI run in this process against `endpoint`: its exit code and what it printed. */
import { main } from '@sluice/cli';

export async function runCli(endpoint: string, ...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(
    [...argv, '--endpoint', endpoint],
    (l) => out.push(l),
    (l) => err.push(l),
  );
  return { code, out: out.join('\n'), err: err.join('\n') };
}
