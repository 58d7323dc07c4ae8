/**
 * `npm start` serves many requests at once, as a Lambda function that serves invocations
 * concurrently does: each request's log lines carry its own request id and entity.
 */
import { expect, it } from 'vitest';
import { acquire } from '../support/admin.js';
import { fileApi } from '../support/api.js';

const api = fileApi('logs', { POWERTOOLS_LOG_LEVEL: 'INFO' });

interface Line {
  readonly message?: string;
  readonly requestId?: string;
  readonly entity?: string;
  readonly tokens?: number;
}

const decisions = (): Line[] =>
  api
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Line)
    .filter((line) => line.message === 'decision');

it("keeps each concurrent request's own keys on its log lines", async () => {
  const limits = [{ name: 'tpm', metric: 'tokens', limit: 100_000, per: 'minute' }];
  const answers = await Promise.all(
    Array.from({ length: 24 }, (_, i) =>
      acquire(api.url, {
        entity: `log-key-${i}`,
        resource: 'log-model',
        usage: { tokens: i + 1 },
        limits,
      }),
    ),
  );
  expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));

  // The lines are written as the requests end; give the pipe a moment.
  for (let wait = 0; decisions().length < 24 && wait < 50; wait++)
    await new Promise((resolve) => setTimeout(resolve, 100));
  const lines = decisions();
  expect(lines).toHaveLength(24);
  // Each line names the entity whose usage it reports, and a request id of its own.
  expect(lines.map((l) => l.entity).sort()).toEqual(
    Array.from({ length: 24 }, (_, i) => `log-key-${i}`).sort(),
  );
  for (const line of lines) expect(line.entity).toBe(`log-key-${(line.tokens ?? 0) - 1}`);
  expect(new Set(lines.map((l) => l.requestId)).size).toBe(24);
});
