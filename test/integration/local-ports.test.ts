/**
 * Ports for processes that bind them later (DynamoDB Local's Java, the soak's servers): chosen
 * where no outgoing connection can take them meanwhile, and a start on a port taken anyway fails
 * at once, saying so, rather than wait on whatever listens there.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { freePort, LocalError, startDynamoDBLocal } from '@sluice/local';
import { describe, expect, it } from 'vitest';

/** The range outgoing connections take their local port from (Linux), if this system says. */
function ephemeralRange(): [number, number] {
  const file = '/proc/sys/net/ipv4/ip_local_port_range';
  if (!existsSync(file)) return [49_152, 65_535]; // macOS and Windows
  const [from, to] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
  return [from ?? 32_768, to ?? 60_999];
}

describe('local ports', () => {
  it('are chosen outside the range outgoing connections take theirs from', async () => {
    const [from, to] = ephemeralRange();
    const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
    expect(ports.filter((port) => port >= from && port <= to)).toEqual([]);
    expect(new Set(ports).size).toBeGreaterThan(150); // spread, not one port again and again
  });

  it('taken by a listener that never answers fail a start at once, naming the bind', async () => {
    // Accepts connections and never answers: a DynamoDB Local that waited for an answer from
    // it would wait for ever.
    const silent: Server = createServer(() => {});
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, '127.0.0.1', resolve));
    try {
      const began = Date.now();
      const error = await startDynamoDBLocal({ port }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LocalError);
      expect((error as LocalError).code).toBe('exited');
      expect((error as LocalError).message).toMatch(/Failed to bind/);
      expect(Date.now() - began).toBeLessThan(20_000);
    } finally {
      silent.close();
    }
  });
});
