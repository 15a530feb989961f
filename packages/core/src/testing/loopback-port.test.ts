import { createServer, type Server } from 'node:net';
import { describe, expect, it } from 'vitest';
import { pickLoopbackPort } from './loopback-port.ts';

async function listenOn(port: number): Promise<Server> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port }, resolve);
  });
  return server;
}

async function close(server: Server): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

describe('pickLoopbackPort', () => {
  it('never hands out a port twice, and stays below the ephemeral range', async () => {
    const ports: number[] = [];
    for (let i = 0; i < 200; i++) ports.push(await pickLoopbackPort());
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) {
      expect(port).toBeGreaterThanOrEqual(20_000);
      expect(port).toBeLessThan(32_768);
    }
  });

  it('skips ports that something listens on, and returns one that can be bound', async () => {
    const previous = await pickLoopbackPort();
    const busy = [await listenOn(previous + 1), await listenOn(previous + 2)];
    try {
      const port = await pickLoopbackPort();
      expect([previous + 1, previous + 2]).not.toContain(port);
      await close(await listenOn(port));
    } finally {
      await Promise.all(busy.map(close));
    }
  });
});
