import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BerthError, describeError, HOST_ERROR_CODES, HostError, isHostDown, ProxyError, type HostErrorCode } from '../../src/domain/errors.js';
import { StepError } from '../../src/reconciler/execute.js';

describe('isHostDown: the one answer to "did the host stop answering?"', () => {
  const down: HostErrorCode[] = [
    HOST_ERROR_CODES.timeout,
    HOST_ERROR_CODES.unreachable,
    HOST_ERROR_CODES.keyMismatch,
    HOST_ERROR_CODES.keyUnknown,
    HOST_ERROR_CODES.authFailed,
    HOST_ERROR_CODES.config,
    HOST_ERROR_CODES.closed,
  ];
  const release: HostErrorCode[] = [
    HOST_ERROR_CODES.docker,
    HOST_ERROR_CODES.imagePullFailed,
    HOST_ERROR_CODES.imageNotFound,
    HOST_ERROR_CODES.staleTask,
    HOST_ERROR_CODES.nameConflict,
    // A container port that refuses: the container's fault, not the host's.
    HOST_ERROR_CODES.httpFailed,
    HOST_ERROR_CODES.channelFailed,
  ];

  for (const code of down) it(`${code} means the host is down`, () => assert.equal(isHostDown(new HostError(code, 'h1', 'x')), true));
  for (const code of release) it(`${code} is not a down host`, () => assert.equal(isHostDown(new HostError(code, 'h1', 'x')), false));

  it('sees a down host through the step error that wraps it', () => {
    const cause = new HostError(HOST_ERROR_CODES.timeout, 'h1', 'list containers did not finish within 15000 ms');
    assert.equal(isHostDown(new StepError('start', cause.code, cause.message, { cause })), true);
    assert.equal(isHostDown(new StepError('health', 'HEALTH_CHECK_FAILED', 'never healthy')), false);
  });

  it('a proxy error or a plain error is not a down host', () => {
    assert.equal(isHostDown(new ProxyError('PROXY_ADMIN_ERROR', 'h1', 'PATCH -> 500')), false);
    assert.equal(isHostDown(new Error('ECONNRESET')), false);
    assert.equal(isHostDown('HOST_TIMEOUT'), false);
  });
});

describe('errors carry their host as a field', () => {
  it('the message says what failed; describeError adds where', () => {
    const e = new HostError(HOST_ERROR_CODES.unreachable, 'h2', 'docker socket /run/docker.sock not reachable over SSH');
    assert.equal(e.host, 'h2');
    assert.equal(e.message, 'docker socket /run/docker.sock not reachable over SSH');
    assert.equal(describeError(e), 'h2: docker socket /run/docker.sock not reachable over SSH');
    assert.equal(describeError(new ProxyError('PROXY_NOT_READY', 'h3', 'admin API not answering')), 'h3: admin API not answering');
    assert.equal(describeError(new BerthError('NOT_FOUND', 'app "web" not found')), 'app "web" not found');
  });
});
