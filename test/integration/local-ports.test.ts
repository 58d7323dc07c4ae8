/**
 * Ports for processes that bind them later (DynamoDB Local's Java, the soak's servers): chosen
 * where no outgoing connection can take them meanwhile and free on every address, and a start on
 * a port taken anyway fails at once, saying so, rather than take whatever listens there for
 * DynamoDB Local.
 */
import { execSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { type DynamoDBLocal, freePort, LocalError, startDynamoDBLocal } from '@sluice/local';
import { describe, expect, it } from 'vitest';

/** The range outgoing connections take their local port from (Linux), if this system says. */
function ephemeralRange(): [number, number] {
  const file = '/proc/sys/net/ipv4/ip_local_port_range';
  if (!existsSync(file)) return [49_152, 65_535]; // macOS and Windows
  const [from, to] = readFileSync(file, 'utf8').trim().split(/\s+/).map(Number);
  return [from ?? 32_768, to ?? 60_999];
}

/** A listener that accepts connections and never answers, on `host`:`port`. */
async function silentOn(port: number, host: string): Promise<Server> {
  const server = createServer(() => {});
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  return server;
}

/** What a start gives: its error, or the instance (stopped again) when it wrongly resolves. */
async function startOutcome(port: number): Promise<unknown> {
  const outcome: unknown = await startDynamoDBLocal({ port }).catch((e: unknown) => e);
  if (!(outcome instanceof Error)) await (outcome as DynamoDBLocal).stop();
  return outcome;
}

describe('local ports', () => {
  it('are chosen outside the range outgoing connections take theirs from', async () => {
    const [from, to] = ephemeralRange();
    const ports = await Promise.all(Array.from({ length: 200 }, () => freePort()));
    expect(ports.filter((port) => port >= from && port <= to)).toEqual([]);
    expect(new Set(ports).size).toBeGreaterThan(150); // spread, not one port again and again
  });

  it('are never one held on another address (Java listens on every address)', async () => {
    const held = await freePort();
    const silent = await silentOn(held, '::1').catch(() => silentOn(held, '127.0.0.2'));
    try {
      const ports = await Promise.all(Array.from({ length: 300 }, () => freePort()));
      expect(ports).not.toContain(held);
      const error = await startOutcome(held);
      expect(error).toBeInstanceOf(LocalError);
      expect((error as LocalError).code).toBe('port_in_use');
    } finally {
      silent.close();
    }
  });

  it('taken by a listener that never answers fail a start at once', async () => {
    const port = await freePort();
    const silent = await silentOn(port, '127.0.0.1');
    try {
      const began = Date.now();
      const error = await startOutcome(port);
      expect(error).toBeInstanceOf(LocalError);
      expect((error as LocalError).code).toBe('port_in_use');
      expect((error as LocalError).message).toContain(String(port));
      expect(Date.now() - began).toBeLessThan(5_000);
    } finally {
      silent.close();
    }
  });

  it('taken by another DynamoDB Local fail a start, never lend it the other one', async () => {
    const other = await startDynamoDBLocal();
    try {
      const outcome = await startOutcome(other.port);
      expect(outcome).toBeInstanceOf(LocalError);
      expect((outcome as LocalError).code).toBe('port_in_use');
    } finally {
      await other.stop();
    }
  });

  it('fail a start at once when its Java is killed by a signal while starting', async () => {
    const began = Date.now();
    const start = startDynamoDBLocal().catch((e: unknown) => e);
    let java: number | undefined;
    while (java === undefined && Date.now() - began < 10_000) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const pids = execSync(`pgrep -P ${process.pid} java || true`).toString().trim();
      if (pids) java = Number(pids.split('\n')[0]);
    }
    expect(java).toBeDefined();
    process.kill(java as number, 'SIGKILL');
    const error = await start;
    expect(error).toBeInstanceOf(LocalError);
    expect((error as LocalError).code).toBe('exited');
    expect((error as LocalError).message).toContain('SIGKILL');
    expect(Date.now() - began).toBeLessThan(15_000);
  });
});

describe('a port two starts race for', () => {
  it('is never lent by the one whose Java binds it to the one whose Java does not', async () => {
    // B checks the port while A's Java is still starting, finds it free, and starts a Java that
    // loses the bind: in the meantime A's Java answers on the port.
    const port = await freePort();
    const a = startDynamoDBLocal({ port });
    await new Promise((resolve) => setTimeout(resolve, 700));
    const b = await startDynamoDBLocal({ port }).catch((e: unknown) => e);
    const first = await a;
    try {
      if (!(b instanceof Error)) await (b as DynamoDBLocal).stop();
      expect(b).toBeInstanceOf(LocalError);
      expect(['exited', 'port_in_use']).toContain((b as LocalError).code);
    } finally {
      await first.stop();
    }
  });
});
