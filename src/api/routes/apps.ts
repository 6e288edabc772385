import type { FastifyInstance, FastifyRequest } from 'fastify';
import { appDocument } from '../../config/app-document.js';
import { validateAppDocument } from '../../config/app.js';
import { routeConflicts } from '../../config/routes.js';
import { routedApp } from '../../domain/processes.js';
import { missingSecretIssues } from '../../secrets/app-secrets.js';
import { ConfigError, ConflictError, NotFoundError } from '../../domain/errors.js';
import { rollbackSpec } from '../../domain/app-spec.js';
import { FAILURE_LOGS_EVENT, failureLogLines } from '../../domain/logs.js';
import type { AppStatus } from '../../domain/release.js';
import { DEFAULT_RELEASES_LIMIT, MAX_APPS_LIMIT, clampLimit, type StoredApp } from '../../store/index.js';
import type { ApiDeps } from '../context.js';
import {
  appDeletingSchema,
  appListSchema,
  appSchema,
  appWriteSchema,
  errorSchema,
  notFound,
  pausedSchema,
  releaseCreatedSchema,
  releaseListSchema,
  restartSchema,
  rollbackCreatedSchema,
  rollbackUnchangedSchema,
} from '../responses.js';
import { appParams, noFields, pageQuery, queryInteger, version } from '../schemas.js';

type AppReq = FastifyRequest<{ Params: { app: string } }>;

/**
 * Who did it, for the audit trail: the CLI's X-Berth-Actor ('api' without one). Nothing
 * derived from the token: events and releases may be read without one (open_reads), and
 * with a single token its id would name no one anyway (docs/design.md, "API and security").
 */
export function actorOf(request: FastifyRequest): string {
  const raw = request.headers['x-berth-actor'];
  return typeof raw === 'string' && /^[\w.@-]{1,64}$/.test(raw) ? raw : 'api';
}

export function mustGetApp(deps: ApiDeps, name: string): StoredApp {
  const app = deps.store.apps.getApp(name);
  if (!app) throw new NotFoundError(`app "${name}"`);
  return app;
}

/** A write that asks for new containers or a new spec is refused while DELETE tears the app down. */
function refuseDeleting(app: StoredApp | null): void {
  if (app?.deletingSince) throw new ConflictError(`app "${app.name}" is being deleted (since ${app.deletingSince}): wait until it is gone`, 'APP_DELETING');
}

function mustGetLiveApp(deps: ApiDeps, name: string): StoredApp {
  const app = mustGetApp(deps, name);
  refuseDeleting(app);
  return app;
}

/** PUT and DELETE are for apps created through the API; the config file manages the apps it declares. */
function refuseFileApp(deps: ApiDeps, name: string, what: string): void {
  if (!deps.configFile.declares(name)) return;
  throw new ConflictError(
    `app "${name}" is declared in the config file ${deps.configFile.path}: ${what} it there, then reload (berth reload, or SIGHUP to the daemon)`,
    'APP_MANAGED_BY_FILE',
  );
}

/** Events that record a rollout giving up (src/reconciler/plan.ts, onFailure). */
const FAILURE_EVENTS = ['RolloutFailed', 'RolloutPaused'];
/** How far back (newest events of the app) `lastFailure` looks for one. */
const FAILURE_LOOKBACK = 200;

/**
 * The newest rollout failure and its message (a health failure's message carries the
 * last probe's answer): the current status when it is Failed (or paused by a failure),
 * else the newest RolloutFailed/RolloutPaused event, e.g. of a release since rolled back.
 */
function lastFailure(deps: ApiDeps, app: string, status: AppStatus | null, desiredRevision: number | null) {
  const progressing = status?.conditions.find((c) => c.type === 'Progressing');
  if (progressing && (status!.phase === 'Failed' || (status!.phase === 'Paused' && progressing.reason !== 'Paused'))) {
    return { reason: progressing.reason, message: progressing.message, revision: desiredRevision, at: progressing.lastTransitionTime, logs: failureLogs(deps, app, desiredRevision) };
  }
  const e = deps.store.events.newestOfTypes(app, FAILURE_EVENTS, FAILURE_LOOKBACK);
  return e ? { reason: e.type, message: e.message, revision: e.revision, at: e.createdAt, logs: failureLogs(deps, app, e.revision) } : null;
}

/**
 * The last log lines of the containers of `revision` that failed, per host (the newest
 * of a host), from their events: they outlive the status of a release rolled back since.
 */
function failureLogs(deps: ApiDeps, app: string, revision: number | null): Array<{ host: string; lines: string[] }> {
  if (revision === null) return [];
  const byHost = new Map<string, string[]>();
  for (const e of deps.store.events.ofTypeAndRevision(app, FAILURE_LOGS_EVENT, revision, FAILURE_LOOKBACK)) if (e.host) byHost.set(e.host, failureLogLines(e.message));
  return [...byHost].map(([host, lines]) => ({ host, lines }));
}

function appView(deps: ApiDeps, app: StoredApp) {
  const desired = deps.store.releases.latestSummary(app.name);
  const status = deps.store.status.readStatus(app.name);
  return {
    name: app.name,
    paused: app.paused,
    maintenance: app.maintenance,
    /** `file`: the config file declares it (edit it there); `api`: created through PUT. */
    managedBy: deps.configFile.declares(app.name) ? 'file' : 'api',
    deletingSince: app.deletingSince,
    spec: appDocument(app.spec),
    desired: desired ? { revision: desired.revision, version: desired.version, reason: desired.reason, actor: desired.actor, createdAt: desired.createdAt } : null,
    status,
    lastFailure: lastFailure(deps, app.name, status, desired?.revision ?? null),
    updatedAt: app.updatedAt,
  };
}

export function appRoutes(app: FastifyInstance, deps: ApiDeps, guard: { read: unknown; write: unknown }): void {
  const read = guard.read as never;
  const write = guard.write as never;

  app.get(
    '/v1/apps',
    {
      onRequest: read,
      schema: {
        operationId: 'listApps',
        summary: 'List apps with their status, by name, one page at a time: pass next as ?after= for the rest',
        querystring: pageQuery({ after: { ...appParams.properties.app, description: 'an app name: only apps after it (by name) are listed' } }, MAX_APPS_LIMIT),
        response: { 200: appListSchema },
      },
    },
    async (req: FastifyRequest<{ Querystring: { limit?: number; after?: string } }>) => {
      const page = deps.store.apps.pageApps({
        ...(req.query.limit !== undefined ? { limit: req.query.limit } : {}),
        ...(req.query.after !== undefined ? { after: req.query.after } : {}),
      });
      return { apps: page.apps.map((a) => appView(deps, a)), next: page.next };
    },
  );

  app.get('/v1/apps/:app', { onRequest: read, schema: { operationId: 'getApp', summary: 'Spec, desired release, status and per-host view of one app', params: appParams, response: { 200: appSchema, ...notFound } } }, async (req: AppReq) =>
    appView(deps, mustGetApp(deps, req.params.app)),
  );

  app.put(
    '/v1/apps/:app',
    {
      onRequest: write,
      schema: {
        operationId: 'putApp',
        summary: 'Create or update an app spec (same shape as an app in berth.yml)',
        description:
          '422 names every problem of the document (issues, each with its key path), a route another app already takes included; 409 for an app the config file declares (APP_MANAGED_BY_FILE) or one being deleted (APP_DELETING).',
        params: appParams,
        body: { type: 'object', description: 'The app document: image, hosts, port, healthcheck, rollout, hooks, retain_containers, stop_timeout, proxy, env, secrets' },
        response: { 200: appWriteSchema, 201: appWriteSchema, 409: errorSchema, 422: errorSchema },
      },
    },
    async (req: AppReq, reply) => {
      refuseFileApp(deps, req.params.app, 'change');
      refuseDeleting(deps.store.apps.getApp(req.params.app));
      const spec = validateAppDocument(req.params.app, req.body, deps.hostNames(), 'body', deps.appPolicy?.() ?? { allowHostAccess: false });
      // Every secret it names is in its file already: the first rollout would fail on it otherwise.
      const missing = missingSecretIssues(spec, deps.secrets, 'body');
      if (missing.length > 0) throw new ConfigError(missing);
      // A route that takes requests another app's route on a shared host already matches
      // (src/config/routes.ts) is refused, naming the app that owns it. No await between
      // this check and the upsert, so two concurrent PUTs cannot both pass it.
      const conflicts = routeConflicts(routedApp(spec), deps.store.apps.listRoutes());
      if (conflicts.length > 0) throw new ConfigError(conflicts.map((message) => ({ path: 'body.proxy', message })));
      const result = deps.store.apps.upsertApp(spec, actorOf(req));
      if (result.change !== 'unchanged') deps.controller.enqueue(spec.name);
      return reply.status(result.change === 'created' ? 201 : 200).send({ ...appView(deps, result.app), change: result.change });
    },
  );

  app.post(
    '/v1/apps/:app/releases',
    {
      onRequest: write,
      schema: {
        operationId: 'createRelease',
        summary: 'Ask for a version: creates the next release revision (202); the controller rolls it out. 200 with unchanged: true when that version and the app spec are already desired',
        params: appParams,
        body: {
          type: 'object',
          required: ['version'],
          additionalProperties: false,
          properties: {
            version,
            expectedRevision: { type: 'integer', minimum: 0, description: 'Optimistic concurrency: the newest revision you saw (0 = none); 409 when another release came first' },
          },
        },
        response: { 200: releaseCreatedSchema, 202: releaseCreatedSchema, ...notFound, 409: errorSchema },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string }; Body: { version: string; expectedRevision?: number } }>, reply) => {
      const app = mustGetLiveApp(deps, req.params.app);
      // The version and the app's spec already desired: 200 with that revision, nothing written.
      const { release, unchanged } = deps.store.releases.createReleaseUnlessCurrent({
        app: app.name,
        version: req.body.version,
        reason: 'deploy',
        actor: actorOf(req),
        ...(req.body.expectedRevision !== undefined ? { expectedRevision: req.body.expectedRevision } : {}),
      });
      if (!unchanged) deps.controller.enqueue(app.name);
      return reply
        .status(unchanged ? 200 : 202)
        .send({ app: app.name, revision: release.revision, version: release.version, reason: release.reason, createdAt: release.createdAt, unchanged });
    },
  );

  app.get(
    '/v1/apps/:app/releases',
    {
      onRequest: read,
      schema: {
        operationId: 'listReleases',
        summary: 'Release history, newest first',
        params: appParams,
        querystring: pageQuery({ before: queryInteger('a revision number: only releases older than it are listed', 0, Number.MAX_SAFE_INTEGER) }),
        response: { 200: releaseListSchema, ...notFound },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string }; Querystring: { limit?: number; before?: number } }>) => {
      const app = mustGetApp(deps, req.params.app);
      const limit = clampLimit(req.query.limit, DEFAULT_RELEASES_LIMIT);
      const releases = deps.store.releases.listReleases(app.name, { limit, ...(req.query.before !== undefined ? { before: req.query.before } : {}) });
      return { releases, next: releases.length === limit ? releases[releases.length - 1]!.revision : null };
    },
  );

  app.post(
    '/v1/apps/:app/rollback',
    {
      onRequest: write,
      schema: {
        operationId: 'rollbackApp',
        summary: 'Roll back to the previous version, or to a named one, as a new revision (202); 200 with unchanged: true when the named version is already desired',
        params: appParams,
        body: { type: 'object', additionalProperties: false, properties: { version } },
        response: { 200: rollbackUnchangedSchema, 202: rollbackCreatedSchema, ...notFound, 409: errorSchema },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string }; Body: { version?: string } | undefined }>, reply) => {
      const app = mustGetLiveApp(deps, req.params.app);
      const current = deps.store.releases.latestRelease(app.name);
      if (!current) throw new ConflictError(`app "${app.name}" has no release to roll back from`);
      const wanted = req.body?.version;
      // Without a version: the newest completed release of another version (a walk of at most history_limit rows, one spec read).
      const target = wanted ? deps.store.releases.findLatestByVersion(app.name, wanted) : deps.store.releases.rollbackTarget(app.name);
      if (!target) {
        if (wanted) throw new NotFoundError(`release with version "${wanted}" of app "${app.name}"`);
        throw new ConflictError(`app "${app.name}" has no earlier version than ${current.version} whose rollout completed; name the version to roll back to`);
      }
      // The named version (with its spec) already desired: 200 with the current revision, nothing written.
      const { release, unchanged } = deps.store.releases.createReleaseUnlessCurrent({ app: app.name, version: target.version, spec: rollbackSpec(target.spec, current.spec), reason: 'rollback', actor: actorOf(req) });
      if (unchanged) return reply.status(200).send({ app: app.name, revision: release.revision, version: release.version, reason: release.reason, unchanged });
      deps.metrics.rollbacksTotal.inc({ app: app.name, reason: 'manual' });
      deps.controller.enqueue(app.name);
      return reply.status(202).send({ app: app.name, revision: release.revision, version: release.version, reason: release.reason, rolledBackFrom: current.version, unchanged });
    },
  );

  app.post(
    '/v1/apps/:app/restart',
    {
      onRequest: write,
      schema: {
        operationId: 'restartApp',
        summary: 'New containers of the desired version on every host, through the health-gated rollout: a new revision (202) whose spec carries restartedAt',
        params: appParams,
        body: noFields,
        response: { 202: restartSchema, ...notFound, 409: errorSchema },
      },
    },
    async (req: FastifyRequest<{ Params: { app: string } }>, reply) => {
      const app = mustGetLiveApp(deps, req.params.app);
      const current = deps.store.releases.latestRelease(app.name);
      if (!current) throw new ConflictError(`app "${app.name}" has no release to restart`);
      const restartedAt = new Date().toISOString();
      const release = deps.store.releases.createRelease({ app: app.name, version: current.version, spec: { ...current.spec, restartedAt }, reason: 'deploy', actor: actorOf(req) });
      deps.controller.enqueue(app.name);
      return reply.status(202).send({ app: app.name, revision: release.revision, version: release.version, reason: release.reason, restartedAt });
    },
  );

  app.delete(
    '/v1/apps/:app',
    {
      onRequest: write,
      schema: {
        operationId: 'deleteApp',
        summary: "Delete an app created through the API (202): the controller takes its routes off every host's proxy (draining them), removes its containers, then its record; its events stay. 409 for an app the config file declares",
        params: appParams,
        response: { 202: appDeletingSchema, ...notFound, 409: errorSchema },
      },
    },
    async (req: AppReq, reply) => {
      mustGetApp(deps, req.params.app);
      refuseFileApp(deps, req.params.app, 'remove');
      const app = deps.store.apps.markDeleting(req.params.app, actorOf(req));
      deps.controller.enqueue(app.name);
      return reply.status(202).send({ app: app.name, deletingSince: app.deletingSince, hosts: app.spec.hosts });
    },
  );

  for (const [action, paused] of [['pause', true], ['resume', false]] as const) {
    app.post(
      `/v1/apps/:app/${action}`,
      {
        onRequest: write,
        schema: {
          operationId: paused ? 'pauseApp' : 'resumeApp',
          summary: paused ? 'Hold the rollout between steps' : 'Let the rollout go on',
          params: appParams,
          body: noFields,
          response: { 200: pausedSchema, ...notFound },
        },
      },
      async (req: AppReq) => {
        mustGetApp(deps, req.params.app);
        const updated = deps.store.apps.setPaused(req.params.app, paused, actorOf(req));
        deps.controller.enqueue(updated.name);
        return { app: updated.name, paused: updated.paused };
      },
    );
  }
}
