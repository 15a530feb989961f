import { once } from 'node:events';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { pickLoopbackPort } from '@tsraft/core/testing';
import { TcpProxy } from '@tsraft/testing';
import { afterEach, describe, expect, it } from 'vitest';

/** A TCP server that answers every chunk with `<tag>:<chunk>` and records what it received. */
async function echoServer(
  tag: string,
): Promise<{ server: Server; port: number; received: string[] }> {
  const received: string[] = [];
  const server = createServer((socket) => {
    socket.on('data', (chunk) => {
      received.push(chunk.toString());
      socket.write(`${tag}:${chunk.toString()}`);
    });
    socket.on('error', () => {});
  });
  const port = await pickLoopbackPort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { server, port, received };
}

async function dial(port: number): Promise<Socket> {
  const socket = tcpConnect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

async function nextChunk(socket: Socket): Promise<string> {
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  return chunk.toString();
}

async function until(probe: () => boolean): Promise<void> {
  while (!probe()) await new Promise((resolve) => setTimeout(resolve, 5));
}

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
});

describe('TcpProxy, the fault-injecting proxy on every peer link', () => {
  it('forwards both ways while open; cut, it drops every byte of open and new connections without refusing or resetting; healed, it destroys the connections that lived through the cut and forwards again', async () => {
    const echo = await echoServer('a');
    cleanup.push(() => echo.server.close());
    const proxy = await TcpProxy.start({
      name: 'x->a',
      target: { host: '127.0.0.1', port: echo.port },
    });
    cleanup.push(() => proxy.close());

    const before = await dial(proxy.port);
    cleanup.push(() => before.destroy());
    before.write('one');
    expect(await nextChunk(before)).toBe('a:one');

    proxy.cut();
    expect(proxy.isCut).toBe(true);
    const received = echo.received.length;
    const answers: string[] = [];
    before.on('data', (chunk) => answers.push(chunk.toString()));
    before.write('lost on an open connection');
    const during = await dial(proxy.port); // accepted: a partition does not refuse
    cleanup.push(() => during.destroy());
    during.on('data', (chunk) => answers.push(chunk.toString()));
    during.write('lost on a new connection');
    const sent = 'lost on an open connection'.length + 'lost on a new connection'.length;
    await until(() => proxy.droppedBytes >= sent);
    expect(proxy.droppedBytes).toBe(sent);
    expect(echo.received.length).toBe(received);
    expect(answers).toEqual([]);
    expect(before.destroyed || during.destroyed).toBe(false);

    const closed = Promise.all([once(before, 'close'), once(during, 'close')]);
    proxy.heal();
    await closed;
    const after = await dial(proxy.port);
    cleanup.push(() => after.destroy());
    after.write('two');
    expect(await nextChunk(after)).toBe('a:two');
  });

  it('sends new connections to a new target after retarget (a Postgres that moved port), the open ones stay', async () => {
    const first = await echoServer('first');
    const second = await echoServer('second');
    cleanup.push(
      () => first.server.close(),
      () => second.server.close(),
    );
    const proxy = await TcpProxy.start({
      name: 'pg',
      target: { host: '127.0.0.1', port: first.port },
    });
    cleanup.push(() => proxy.close());
    const old = await dial(proxy.port);
    cleanup.push(() => old.destroy());
    old.write('x');
    expect(await nextChunk(old)).toBe('first:x');

    proxy.retarget({ host: '127.0.0.1', port: second.port });
    const fresh = await dial(proxy.port);
    cleanup.push(() => fresh.destroy());
    fresh.write('y');
    expect(await nextChunk(fresh)).toBe('second:y');
    old.write('z');
    expect(await nextChunk(old)).toBe('first:z');
  });

  it('closes the accepted connection when the target refuses (a node that is down)', async () => {
    const port = await pickLoopbackPort();
    const proxy = await TcpProxy.start({ name: 'x->down', target: { host: '127.0.0.1', port } });
    cleanup.push(() => proxy.close());
    const socket = await dial(proxy.port);
    await once(socket, 'close');
    expect(socket.destroyed).toBe(true);
  });
});
