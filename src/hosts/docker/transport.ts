/**
 * How the driver reaches a host: the docker-modem it dials the Docker API through, and the
 * HTTP targets of health probes / Unix-socket requests. Over SSH every stream is a channel on
 * one multiplexed connection; locally they are the Docker socket and plain TCP / Unix sockets.
 */
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { inspect } from 'node:util';
import Docker from 'dockerode';
import type DockerModem from 'docker-modem';
import type { HostSpec } from '../../domain/app-spec.js';
import { HOST_ERROR_CODES, HostError } from '../../domain/errors.js';
import type { Logger } from '../../log.js';
import { reportOperation, type HostOperation } from '../host-driver.js';
import type { HttpTarget } from '../http-request.js';
import { SshConnection, type SshConnectionOptions } from '../ssh-connection.js';

/** How the driver reaches the host. */
export interface Transport {
  readonly kind: 'ssh' | 'local';
  readonly modem: DockerModem;
  tcpTarget(ip: string, port: number): HttpTarget;
  unixTarget(socketPath: string): Extract<HttpTarget, { kind: 'stream' | 'unix' }>;
  close(): Promise<void>;
}

/** The driver options a transport uses. */
export interface TransportOptions {
  /** Observes every host operation (for berth_host_operation_duration_seconds{host,op}). */
  onOperation?: (op: HostOperation, seconds: number, ok: boolean) => void;
  /** SSH connection tuning (SSH driver only). */
  ssh?: SshConnectionOptions;
}

/** An http.Agent whose connections are SSH streamlocal channels to the Docker socket. */
class SshDockerAgent extends http.Agent {
  constructor(
    private readonly conn: SshConnection,
    private readonly socketPath: string,
  ) {
    super({ keepAlive: false });
  }

  /**
   * docker-modem util.inspect()s every request's options, this agent included, even
   * with its debug output off; the SSH connection behind it made that cost ms per call.
   */
  [inspect.custom](): string {
    return `SshDockerAgent(${this.conn.spec.name})`;
  }

  override createConnection(
    _options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.conn.forwardUnix(this.socketPath).then(
      (stream) => callback?.(null, stream),
      (err: unknown) => {
        const he =
          err instanceof HostError && err.code === HOST_ERROR_CODES.channelFailed
            ? new HostError(
                HOST_ERROR_CODES.unreachable,
                this.conn.spec.name,
                `docker socket ${this.socketPath} not reachable over SSH (is dockerd running?): ${(err.cause as Error | undefined)?.message ?? err.message}`,
                { cause: err },
              )
            : err instanceof Error
              ? err
              : new Error(String(err));
        // Node ignores the stream argument when err is set; the type wants one.
        callback?.(he, undefined as unknown as Duplex);
      },
    );
    return undefined;
  }
}

/** Modem options that ignore DOCKER_HOST / DOCKER_TLS_* from the daemon's environment. */
function modemFor(opts: DockerModem.ConstructorOptions): DockerModem {
  const base: DockerModem.ConstructorOptions = {
    socketPath: undefined,
    host: undefined,
    port: undefined,
    protocol: 'http',
    ca: undefined,
    cert: undefined,
    key: undefined,
    timeout: undefined,
    version: undefined,
    headers: {},
  };
  return new Docker({ ...base, ...opts } as Docker.DockerOptions).modem;
}

/** The Docker socket and container ports as channels on one SSH connection to the host. */
export function sshTransport(spec: HostSpec, log: Logger, opts: TransportOptions): Transport {
  const conn = new SshConnection(spec, log, {
    ...opts.ssh,
    onConnect: (s, ok) => {
      opts.ssh?.onConnect?.(s, ok);
      reportOperation(opts.onOperation, 'connect', s, ok);
    },
  });
  const agent = new SshDockerAgent(conn, spec.dockerSocket);
  // `host` only feeds the URL / Host header; the agent decides where bytes go.
  const modem = modemFor({ host: 'docker', port: 80, protocol: 'http', agent });
  return {
    kind: 'ssh',
    modem,
    tcpTarget: (ip, port) => ({
      kind: 'stream',
      open: () => conn.forwardTcp(ip, port),
      hostHeader: `${ip}:${port}`,
      describe: `http://${ip}:${port}`,
    }),
    unixTarget: (socketPath) => ({
      kind: 'stream',
      open: () => conn.forwardUnix(socketPath),
      hostHeader: '',
      describe: `unix:${socketPath}:`,
    }),
    close: async () => {
      agent.destroy();
      await conn.close();
    },
  };
}

/** This machine's Docker: the socket path, and direct TCP / Unix connections. */
export function localTransport(spec: HostSpec): Transport {
  const modem = modemFor({ socketPath: spec.dockerSocket });
  return {
    kind: 'local',
    modem,
    tcpTarget: (ip, port) => ({ kind: 'tcp', ip, port }),
    unixTarget: (socketPath) => ({ kind: 'unix', socketPath }),
    close: async () => undefined,
  };
}
