// A real OpenID Provider for the SSO tests: `oidc-provider` (npm; a certified OpenID
// Provider implementation) with its development login form, on 127.0.0.1.
//
//   node tests/oidc-idp.mjs USERS_JSON REDIRECT_URI CLIENT_ID CLIENT_SECRET
//
// USERS_JSON maps a login to its claims, {"ann": {"email": ..., "groups": [...]}}; it is
// read at every login, so a test changes a user's groups (or removes the user) between
// logins by rewriting it. A login not in it is refused by the provider. The form takes any
// password (the provider's development interactions); Jumpgate's side is what is tested.
// Prints "issuer http://127.0.0.1:PORT" once it listens; stops on SIGTERM.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const [usersFile, redirectUri, clientId, clientSecret] = process.argv.slice(2);
if (!usersFile || !redirectUri || !clientId || !clientSecret) {
  console.error('usage: node tests/oidc-idp.mjs USERS_JSON REDIRECT_URI CLIENT_ID CLIENT_SECRET');
  process.exit(2);
}

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['jumpgate-test-cookie-key'] },
  async findAccount(_ctx, id) {
    const users = JSON.parse(readFileSync(usersFile, 'utf8'));
    const user = Object.hasOwn(users, id) ? users[id] : undefined;
    if (!user) {
      return undefined;
    }
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: user.email,
          email_verified: user.email_verified ?? true,
          groups: user.groups ?? [],
        };
      },
    };
  },
});
// Logged so a failing test shows why the provider refused.
provider.on('server_error', (_ctx, err) => console.error('server_error', err));
provider.on('authorization.error', (_ctx, err) => console.error('authorization.error', err.message));
provider.on('grant.error', (_ctx, err) => console.error('grant.error', err.message));

server.on('request', provider.callback());
console.log(`issuer ${issuer}`);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
