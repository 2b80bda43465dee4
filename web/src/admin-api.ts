// The admin and invite endpoints of the web API (docs/webapi.yaml), on api.ts's one
// request function: same origin, the session cookie, the CSRF token on every change.
import { call } from './api';
import type { InviteKey } from './webauthn';

export interface LockInfo {
  name: string;
  message: string;
  /** RFC 3339; empty: until removed. */
  expires: string;
}

export interface User {
  name: string;
  roles: string[];
  logins: string[];
  locked_out_until_unix: number | null;
  locks: LockInfo[];
}

export interface UsersPage {
  users: User[];
  locks_listed: boolean;
}

export interface Invite {
  user: string;
  invite_url: string;
  expires_unix: number | null;
}

export interface RoleSummary {
  name: string;
  description: string;
}

export interface SavedRole {
  name: string;
  created: boolean;
  warnings: string[];
}

export interface JoinToken {
  id: string;
  roles: string[];
  expires_unix: number | null;
  kind: string;
  single_use: boolean;
}

export interface NewJoinToken {
  token: string;
  id: string;
  role: string;
  expires_unix: number | null;
  ca_pins: string[];
  config: string;
  command: string;
}

export interface InviteInfo {
  user: string;
  otpauth_uri: string;
  expires_unix: number;
  /** The cluster's second factor: `webauthn` asks for a key, `on`/`optional` a key or a code. */
  second_factor: string;
}

const path = (name: string) => encodeURIComponent(name);

export const listUsers = () => call<UsersPage>('GET', '/webapi/web/users');
export const addUser = (name: string, roles: string[], logins: string[]) =>
  call<Invite>('POST', '/webapi/web/users', { name, roles, logins });
export const resetUser = (name: string) => call<Invite>('POST', `/webapi/web/users/${path(name)}/reset`);
export const lockUser = (name: string, message: string) =>
  call<LockInfo>('POST', `/webapi/web/users/${path(name)}/lock`, { message });
export const unlockUser = (name: string) => call<void>('POST', `/webapi/web/users/${path(name)}/unlock`);
export const deleteUser = (name: string) => call<void>('DELETE', `/webapi/web/users/${path(name)}`);

export const listRoles = () => call<{ roles: RoleSummary[] }>('GET', '/webapi/web/roles');
export const getRole = (name: string) => call<{ name: string; yaml: string }>('GET', `/webapi/web/roles/${path(name)}`);
export const saveRole = (yaml: string, overwrite: boolean) =>
  call<SavedRole>('POST', '/webapi/web/roles', { yaml, overwrite });
export const deleteRole = (name: string) => call<void>('DELETE', `/webapi/web/roles/${path(name)}`);

export const listTokens = () => call<{ tokens: JoinToken[] }>('GET', '/webapi/web/tokens');
export const addToken = (role: string, ttl_seconds: number) =>
  call<NewJoinToken>('POST', '/webapi/web/tokens', { role, ttl_seconds });
export const deleteToken = (id: string) => call<void>('DELETE', `/webapi/web/tokens/${path(id)}`);

export const readInvite = (token: string) => call<InviteInfo>('POST', '/webapi/web/invite', { token });
export const completeInvite = (token: string, password: string, otp: string, key?: InviteKey) =>
  call<{ user: string }>('POST', '/webapi/web/invite/complete', { token, password, otp, key });

/** A Unix time as the browser's local date and time. */
export function when(unix: number | null): string {
  return unix === null ? 'never' : new Date(unix * 1000).toLocaleString();
}
