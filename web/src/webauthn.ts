// Security keys and passkeys (WebAuthn) in the browser: the server's options (binary
// fields in base64url, as webauthn-rs writes them) to what navigator.credentials takes,
// and the key's answer back to JSON for the server (`/webapi/web/mfa/*`, docs/web.md).
import { ApiError, call, type Session } from './api';

/** A ceremony begun by the server; `options` null: nothing to do (no key). */
interface Challenge {
  ceremony_id: string;
  options: { publicKey: Record<string, unknown> } | null;
}

export interface Device {
  name: string;
  id: string;
  passwordless: boolean;
  added_unix: number;
  last_used_unix: number | null;
}

export interface Devices {
  devices: Device[];
  second_factor: string;
  webauthn_enabled: boolean;
  passwordless_enabled: boolean;
  has_otp: boolean;
}

function bytes(text: unknown): ArrayBuffer {
  const b64 = String(text).replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    out[i] = raw.charCodeAt(i);
  }
  return out.buffer;
}

function b64url(buffer: ArrayBuffer | null): string | null {
  if (buffer === null) {
    return null;
  }
  let raw = '';
  for (const byte of new Uint8Array(buffer)) {
    raw += String.fromCharCode(byte);
  }
  return btoa(raw).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

type Descriptor = { id: unknown };
const withIds = (list: unknown) => (Array.isArray(list) ? list.map((d: Descriptor) => ({ ...d, id: bytes(d.id) })) : undefined);

/** The browser's refusal (cancelled, timed out, no matching key) as a message to show. */
function refused(err: unknown): ApiError {
  if (err instanceof ApiError) {
    return err;
  }
  const name = err instanceof DOMException ? err.name : '';
  const message =
    name === 'NotAllowedError'
      ? 'The security key was not used (cancelled, timed out, or not registered here).'
      : name === 'InvalidStateError'
        ? 'This security key is already registered.'
        : `The browser refused the security key: ${String(err)}`;
  return new ApiError(0, 'webauthn', message);
}

/** navigator.credentials.get with the server's options; the answer as JSON. */
async function assert(options: Record<string, unknown>): Promise<unknown> {
  const publicKey = { ...options, challenge: bytes(options.challenge), allowCredentials: withIds(options.allowCredentials) };
  const credential = (await navigator.credentials.get({ publicKey } as CredentialRequestOptions)) as PublicKeyCredential | null;
  if (credential === null) {
    throw new ApiError(0, 'webauthn', 'No security key answered.');
  }
  const response = credential.response as AuthenticatorAssertionResponse;
  return {
    id: credential.id,
    rawId: b64url(credential.rawId),
    type: credential.type,
    extensions: {},
    response: {
      authenticatorData: b64url(response.authenticatorData),
      clientDataJSON: b64url(response.clientDataJSON),
      signature: b64url(response.signature),
      userHandle: b64url(response.userHandle),
    },
  };
}

async function finishLogin(challenge: Challenge): Promise<Session | null> {
  if (challenge.options === null) {
    return null;
  }
  const credential = await assert(challenge.options.publicKey).catch((err: unknown) => {
    throw refused(err);
  });
  return call<Session>('POST', '/webapi/web/mfa/login/finish', { ceremony_id: challenge.ceremony_id, credential });
}

/** Password then key: null when the user has no key (log in with the code instead). */
export async function keyLogin(user: string, password: string): Promise<Session | null> {
  return finishLogin(await call<Challenge>('POST', '/webapi/web/mfa/login/begin', { user, password }));
}

/** A passkey alone: the key says whose account it is. */
export async function passkeyLogin(): Promise<Session> {
  const session = await finishLogin(await call<Challenge>('POST', '/webapi/web/mfa/passwordless/begin', {}));
  if (session === null) {
    throw new ApiError(0, 'webauthn', 'Passkeys are off in this cluster.');
  }
  return session;
}

export function listDevices(): Promise<Devices> {
  return call<Devices>('GET', '/webapi/web/mfa/devices');
}

export function removeDevice(name: string): Promise<void> {
  return call<void>('DELETE', `/webapi/web/mfa/devices/${encodeURIComponent(name)}`);
}

/** navigator.credentials.create with the server's registration options; the answer as JSON. */
async function create(options: Record<string, unknown> | undefined): Promise<unknown> {
  if (options === undefined) {
    throw new ApiError(0, 'webauthn', 'The server sent no registration options.');
  }
  const user = options.user as Record<string, unknown>;
  const publicKey = {
    ...options,
    challenge: bytes(options.challenge),
    user: { ...user, id: bytes(user.id) },
    excludeCredentials: withIds(options.excludeCredentials),
  };
  let credential: PublicKeyCredential | null;
  try {
    credential = (await navigator.credentials.create({ publicKey } as CredentialCreationOptions)) as PublicKeyCredential | null;
  } catch (err) {
    throw refused(err);
  }
  if (credential === null) {
    throw new ApiError(0, 'webauthn', 'No security key answered.');
  }
  const response = credential.response as AuthenticatorAttestationResponse;
  return {
    id: credential.id,
    rawId: b64url(credential.rawId),
    type: credential.type,
    extensions: {},
    response: {
      attestationObject: b64url(response.attestationObject),
      clientDataJSON: b64url(response.clientDataJSON),
    },
  };
}

/** Registers a key (the password again first); the new key's entry. */
export async function registerDevice(password: string, name: string, passwordless: boolean): Promise<Device> {
  const challenge = await call<Challenge>('POST', '/webapi/web/mfa/devices/register/begin', { password, name, passwordless });
  const credential = await create(challenge.options?.publicKey);
  return call<Device>('POST', '/webapi/web/mfa/devices/register/finish', { ceremony_id: challenge.ceremony_id, credential });
}

/** A key registered on the invite page (the signup token authorises it); the signup carries it. */
export interface InviteKey {
  ceremony_id: string;
  credential: unknown;
}

export async function inviteKey(token: string, name: string): Promise<InviteKey> {
  const challenge = await call<Challenge>('POST', '/webapi/web/invite/key', { token, name });
  return { ceremony_id: challenge.ceremony_id, credential: await create(challenge.options?.publicKey) };
}
