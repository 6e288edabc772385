/**
 * A TCP forwarder in a child process (the daemons' PostgreSQL connections go through it),
 * one listening port per daemon, each of which can be cut: its connections go silent in
 * both directions, as a partitioned network does (no reset, no FIN), and new ones are
 * accepted but never answered. `heal` resets the cut connections and forwards again.
 * A child process, so a test whose own thread blocks (or a daemon's) never stalls it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { freePort } from './daemon.js';

const FORWARDER = `
const net = require('node:net');
const [upHost, upPort, ...ports] = process.argv.slice(1);
const cut = new Set();
const conns = new Map(ports.map((p) => [p, new Set()]));
let listening = 0;
for (const port of ports) {
  net.createServer((c) => {
    const u = net.connect(Number(upPort), upHost);
    conns.get(port).add(c);
    c.on('data', (d) => { if (!cut.has(port)) u.write(d); });
    u.on('data', (d) => { if (!cut.has(port)) c.write(d); });
    for (const s of [c, u]) s.on('error', () => {});
    c.on('close', () => { u.destroy(); conns.get(port).delete(c); });
    u.on('close', () => c.destroy());
  }).listen(Number(port), '127.0.0.1', () => { if (++listening === ports.length) process.stdout.write('ready\\n'); });
}
process.stdin.setEncoding('utf8').on('data', (text) => {
  for (const line of text.split('\\n').filter(Boolean)) {
    const [what, port] = line.split(' ');
    if (what === 'cut') cut.add(port);
    if (what === 'heal') { cut.delete(port); for (const c of conns.get(port)) c.destroy(); }
    process.stdout.write('done ' + line + '\\n');
  }
});
`;

export interface TcpCut {
  /** The forwarding port for each of `count` clients. */
  ports: number[];
  cut(port: number): Promise<void>;
  heal(port: number): Promise<void>;
  close(): void;
}

export async function startTcpCut(upstream: { host: string; port: number }, count: number): Promise<TcpCut> {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(await freePort());
  const child: ChildProcess = spawn(process.execPath, ['-e', FORWARDER, upstream.host, String(upstream.port), ...ports.map(String)], { stdio: ['pipe', 'pipe', 'inherit'] });
  child.stdout!.setEncoding('utf8');
  let out = '';
  child.stdout!.on('data', (d: string) => (out += d));
  const waitFor = async (line: string) => {
    while (!out.includes(line)) await once(child.stdout!, 'data');
  };
  await waitFor('ready');
  const say = async (what: string) => {
    child.stdin!.write(`${what}\n`);
    await waitFor(`done ${what}`);
  };
  return {
    ports,
    cut: (port) => say(`cut ${port}`),
    heal: (port) => say(`heal ${port}`),
    close: () => void child.kill(),
  };
}
