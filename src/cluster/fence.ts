import { AsyncLocalStorage } from 'node:async_hooks';
import { BerthError } from '../domain/errors.js';

/** This daemon does not (or no longer) lead: what it was doing on the leader's behalf stops. */
export class NotLeaderError extends BerthError {
  constructor(message: string) {
    super('NOT_LEADER', message);
  }
}

/**
 * What a leader's work checks before it acts (lease.ts). `beforeRemote`: before every call
 * to a host, that the lease has not lapsed by this daemon's own clock. `beforeWrite`: first
 * in every store write transaction, that no other daemon holds a newer epoch.
 * Both throw NotLeaderError.
 */
export interface Fence {
  beforeRemote(): void;
  beforeWrite(): void;
}

const fences = new AsyncLocalStorage<Fence>();

/** Runs `fn`, and everything it awaits, as the leader's work: its host calls and store writes are fenced. */
export function runFenced<T>(fence: Fence, fn: () => T): T {
  return fences.run(fence, fn);
}

/** The fence of the leader's work running now, if any (API requests run unfenced: any daemon serves them). */
export function activeFence(): Fence | undefined {
  return fences.getStore();
}
