import { readFileSync } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthChecks } from '../auth.js';
import { cookieValue, SESSION_COOKIE, sessionCookie, type SessionStore } from '../session.js';

/** `ui/` at the repository root: three levels above both src/api/routes/ (tsx) and dist/api/routes/ (tsc), as migrations/ is. */
export const UI_DIR = new URL('../../../ui/', import.meta.url);

/**
 * No inline script or style anywhere: the page's code is /ui/app.js, its look /ui/style.css,
 * and it talks to this origin only. Forms post here only; nobody may frame it.
 */
export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** The icon spares every page load a 404 for /favicon.ico (browsers ask for it unless the page names one). */
const ASSETS = { 'app.js': 'text/javascript; charset=utf-8', 'style.css': 'text/css; charset=utf-8', 'icon.svg': 'image/svg+xml' } as const;
/** Where the login page says why the last attempt failed (fixed texts only, nothing from the request). */
const MESSAGE_SLOT = '<!--message-->';
/** A login form body is one token; anything bigger is not one. */
const LOGIN_BODY_LIMIT = 4096;

export interface UiDeps {
  sessions: SessionStore;
  auth: AuthChecks;
  /** The read guard of the API (token, session, or open on loopback with open_reads). */
  read(request: FastifyRequest): Promise<void>;
}

function page(reply: FastifyReply, status: number, html: string): FastifyReply {
  return reply
    .status(status)
    .header('content-security-policy', PAGE_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(html);
}

const loginPage = (template: string, message: string | null) =>
  template.replace(MESSAGE_SLOT, message ? `<p class="error" role="alert">${message}</p>` : '');

/**
 * The status page (README.md, "Status page"): `/` is the page for a reader the API would
 * answer, else the login form; POST /ui/login trades the token for a session cookie,
 * POST /ui/logout ends it. Hidden from /openapi.json: not API.
 */
export function uiRoutes(app: FastifyInstance, ui: UiDeps): void {
  const read = (name: string) => readFileSync(new URL(name, UI_DIR), 'utf8');
  const index = read('index.html');
  const login = read('login.html');
  const assets = Object.fromEntries(Object.keys(ASSETS).map((name) => [name, read(name)]));
  const hidden = { hide: true } as const;

  app.get('/', { schema: hidden }, async (request, reply) => {
    try {
      await ui.read(request);
    } catch {
      return page(reply, 200, loginPage(login, null));
    }
    return page(reply, 200, index);
  });

  for (const [name, type] of Object.entries(ASSETS)) {
    app.get(`/ui/${name}`, { schema: hidden }, async (_request, reply) =>
      reply.header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').type(type).send(assets[name]),
    );
  }

  // The forms post application/x-www-form-urlencoded, accepted in this scope only: the API stays JSON-only.
  app.register(async (forms) => {
    forms.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: LOGIN_BODY_LIMIT }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    forms.post(
      '/ui/login',
      { schema: { ...hidden, body: { type: 'object', properties: { token: { type: 'string', maxLength: 1024 } } } } },
      async (request: FastifyRequest<{ Body: { token?: string } }>, reply) => {
        const token = (request.body.token ?? '').trim();
        if (!ui.auth.tokenMatches(token)) {
          request.log.warn('status page login refused: wrong token');
          const why = !ui.auth.hasToken
            ? 'This berth has no API token configured; set BERTH_TOKEN or api.token.'
            : token
              ? 'That is not the API token. Try again.'
              : 'Enter the API token.';
          return page(reply, 401, loginPage(login, why));
        }
        const { id, maxAgeS } = ui.sessions.create();
        request.log.info('status page login');
        return reply.status(303).header('set-cookie', sessionCookie(id, maxAgeS, request.protocol === 'https')).header('location', '/').send();
      },
    );
    forms.post('/ui/logout', { schema: hidden }, async (request, reply) => {
      ui.sessions.revoke(cookieValue(request.headers.cookie, SESSION_COOKIE));
      return reply.status(303).header('set-cookie', sessionCookie('', 0, request.protocol === 'https')).header('location', '/').send();
    });
  });
}
