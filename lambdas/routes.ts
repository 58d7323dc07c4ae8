/**
 * THE route table. The local server and the CDK stack both read it; no route is listed twice.
 * `entry` is the handler's file (it exports `handler`); `auth` is the permission class a caller
 * needs (`client`: acquire and friends; `admin`: configuration).
 */
export interface Route {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly name: string;
  readonly auth: 'client' | 'admin';
  readonly entry: URL;
}

const at = (file: string) => new URL(file, import.meta.url);

/** Every route of HTTP API v1. */
export const routes: readonly Route[] = [
  {
    method: 'POST',
    path: '/v1/acquire',
    name: 'acquire',
    auth: 'client',
    entry: at('./acquire.ts'),
  },
  { method: 'POST', path: '/v1/adjust', name: 'adjust', auth: 'client', entry: at('./adjust.ts') },
  {
    method: 'POST',
    path: '/v1/release',
    name: 'release',
    auth: 'client',
    entry: at('./release.ts'),
  },
  {
    method: 'POST',
    path: '/v1/available',
    name: 'available',
    auth: 'client',
    entry: at('./available.ts'),
  },
  { method: 'GET', path: '/v1/health', name: 'health', auth: 'client', entry: at('./health.ts') },
];
