// A real OpenID provider (panva oidc-provider 9) for countersign's integration tests.
//
// Configuration: a JSON object in the environment variable TESTKIT_OIDC_CONFIG, or as the first
// argument; every key is optional (see `defaults` below). The server listens on 127.0.0.1 (port 0,
// an ephemeral one, unless `port` is given) and prints exactly one JSON line to stdout once it
// accepts connections: {"issuer":"http://127.0.0.1:PORT", ...}. It exits when stdin closes, so
// a test process that dies cannot leave it behind (TESTKIT_OIDC_IGNORE_STDIN=1 turns that off,
// for running it by hand).
//
// Everything lives in memory and keys are generated at start: a restart is a new provider with
// new keys (handy for key-rotation tests when the same `port` is given again).

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const raw = process.env.TESTKIT_OIDC_CONFIG ?? process.argv[2] ?? '{}';
let config;
try {
  config = JSON.parse(raw);
} catch (err) {
  console.error(`invalid JSON configuration: ${err.message}`);
  process.exit(2);
}
if (config === null || typeof config !== 'object' || Array.isArray(config)) {
  console.error('the configuration must be a JSON object');
  process.exit(2);
}

const HOST = '127.0.0.1';

// The API audience: a user's or workload's access token requested with `resource=<audience>` is
// an ES256-signed JWT (typ at+jwt) for it. `extra_audiences` adds more resource servers.
const audience = config.audience ?? 'api://countersign';
const audiences = [audience, ...(config.extra_audiences ?? [])];
const resourceScope = config.resource_scope ?? 'countersign';
const accessTokenAlg = config.access_token_alg ?? 'ES256';
const accessTokenTTL = config.access_token_ttl ?? 3600;

// Users: `sub` is the user name. `users` in the configuration adds users or overrides fields of
// the default ones; a value of null removes a default user.
const defaultUsers = {
  alice: { name: 'Alice Adams', groups: ['dev'], team: 'payments' },
  bob: { name: 'Bob Baker', groups: ['sre'], team: 'platform' },
  carol: { name: 'Carol Chen', groups: ['security'], team: 'security' },
  dave: { name: 'Dave Davis', groups: ['sre', 'security'], team: 'platform' },
  erin: { name: 'Erin Evans', groups: ['admin'], team: 'it' },
  // A second account of alice's, with the same verified e-mail address.
  alice2: {
    name: 'Alice Adams', groups: ['sre'], team: 'payments', email: 'alice@example.com',
  },
  frank: { name: 'Frank Foster', groups: ['sre'], team: 'platform' },
};

const users = {};
for (const [id, value] of Object.entries({ ...defaultUsers, ...(config.users ?? {}) })) {
  if (value === null) continue;
  const base = defaultUsers[id] ?? {};
  const user = { ...base, ...value };
  users[id] = {
    name: user.name ?? id,
    preferred_username: user.preferred_username ?? id,
    email: user.email ?? `${id}@example.com`,
    email_verified: user.email_verified ?? true,
    groups: user.groups ?? [],
    team: user.team,
    ...(user.extra_claims ?? {}),
  };
}

// Workloads: extra claims put into the JWT access tokens a client gets through
// client_credentials. `sub` replaces the token's subject (oidc-provider would use the client id).
const workloads = {
  'ci-workload': {
    sub: 'repo:acme/app:ref:refs/heads/main',
    repository: 'acme/app',
    repository_owner: 'acme',
    repository_id: '1234',
    ref: 'refs/heads/main',
    workflow: 'deploy',
    actor: 'alice',
    actor_id: 'alice',
  },
  ...(config.workloads ?? {}),
};

const clients = [
  {
    client_id: 'countersign-web',
    client_secret: 'web-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: config.redirect_uris ?? ['http://127.0.0.1/callback'],
    post_logout_redirect_uris: config.post_logout_redirect_uris ?? ['http://127.0.0.1/'],
    ...(config.backchannel_logout_uri ? {
      backchannel_logout_uri: config.backchannel_logout_uri,
      backchannel_logout_session_required: true,
    } : {}),
    id_token_signed_response_alg: 'ES256',
    ...(config.web_client ?? {}),
  },
  {
    client_id: 'countersign-cli',
    application_type: 'native',
    token_endpoint_auth_method: 'none',
    grant_types: [
      'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code',
    ],
    response_types: ['code'],
    // Native clients may use any port on a loopback redirect URI.
    redirect_uris: ['http://127.0.0.1/callback'],
    id_token_signed_response_alg: 'ES256',
    ...(config.cli_client ?? {}),
  },
  {
    client_id: 'ci-workload',
    client_secret: 'ci-secret',
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: resourceScope,
  },
];
for (const extra of config.clients ?? []) {
  const at = clients.findIndex((c) => c.client_id === extra.client_id);
  if (at === -1) clients.push(extra); else clients[at] = extra;
}

// Signing keys, generated at start: EC P-256 first (the default, ES256), then RSA 2048 (RS256).
function privateJwk(keyObject, alg) {
  return {
    ...keyObject.export({ format: 'jwk' }),
    kid: `${alg.toLowerCase()}-${crypto.randomBytes(8).toString('hex')}`,
    alg,
    use: 'sig',
  };
}
const keys = config.jwks?.keys ?? [
  privateJwk(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'ES256'),
  privateJwk(crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256'),
];

function authTimeOf(ctx) {
  const entities = ctx?.oidc?.entities ?? {};
  const source = entities.AuthorizationCode ?? entities.RefreshToken ?? entities.DeviceCode
    ?? entities.BackchannelAuthenticationRequest;
  return source?.authTime;
}

const configuration = {
  clients,
  jwks: { keys },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups', 'team'],
  },
  scopes: ['openid', 'offline_access', resourceScope],
  // Put the claims of every granted scope into the ID token, not only into userinfo.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  enabledJWA: {
    idTokenSigningAlgValues: ['ES256', 'RS256'],
    userinfoSigningAlgValues: ['ES256', 'RS256'],
    introspectionSigningAlgValues: ['ES256', 'RS256'],
    authorizationSigningAlgValues: ['ES256', 'RS256'],
  },
  clientDefaults: {
    id_token_signed_response_alg: 'ES256',
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    deviceFlow: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // With `default_resource: true`, requests without `resource` get the API audience.
      defaultResource: (ctx, client, oneOf) => {
        if (oneOf) return oneOf;
        return config.default_resource ? audience : undefined;
      },
      // Code, refresh and device-code exchanges keep the resource granted at authorization.
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (!audiences.includes(resourceIndicator)) {
          throw new errors.InvalidTarget(`unknown resource indicator ${resourceIndicator}`);
        }
        return {
          scope: resourceScope,
          audience: resourceIndicator,
          accessTokenTTL,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: accessTokenAlg } },
        };
      },
    },
  },
  // Refresh tokens for every client allowed the refresh_token grant, offline_access or not.
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...user };
      },
    };
  },
  async extraTokenClaims(ctx, token) {
    if (token.kind === 'ClientCredentials') {
      const { sub, ...claims } = workloads[token.clientId] ?? {};
      return Object.keys(claims).length ? claims : undefined;
    }
    const user = token.accountId ? users[token.accountId] : undefined;
    if (!user) return undefined;
    const authTime = authTimeOf(ctx);
    return {
      name: user.name,
      email: user.email,
      email_verified: user.email_verified,
      groups: user.groups,
      team: user.team,
      ...(authTime ? { auth_time: authTime } : {}),
    };
  },
  formats: {
    customizers: {
      // oidc-provider writes `sub: accountId || clientId` after the extra claims, so a
      // workload's subject can only be set here.
      jwt(ctx, token, jwt) {
        if (token.kind === 'ClientCredentials') {
          const sub = workloads[token.clientId]?.sub;
          if (sub) jwt.payload.sub = sub;
        }
      },
    },
  },
  ...(config.ttl ? { ttl: config.ttl } : {}),
  // Outgoing requests (back-channel logout) go to the relying party under test on 127.0.0.1,
  // which oidc-provider's SSRF protection refuses as a special-use address; a test provider
  // talks only to loopback, so the protection is dropped here.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
};

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, HOST, resolve);
});
const { port } = server.address();
const issuer = `http://${HOST}:${port}`;

const provider = new Provider(issuer, configuration);
// Static clients are only checked on first use; check them now so a bad one fails the start.
for (const client of clients) {
  try {
    await provider.Client.validate(client);
  } catch (err) {
    throw new Error(`invalid client ${client.client_id}: ${err.message} ${err.error_description ?? ''}`);
  }
}
provider.on('server_error', (ctx, err) => console.error('server_error', err));
// Back-channel logout happens server to server: say how each delivery went.
provider.on('backchannel.success', (ctx, client) => console.error('backchannel.success', client.clientId));
provider.on('backchannel.error', (ctx, err, client) => console.error('backchannel.error', client?.clientId, err?.message ?? err, err?.cause?.message ?? ''));
server.on('request', provider.callback());

process.stdout.write(`${JSON.stringify({
  issuer,
  audience,
  kids: keys.map((k) => k.kid),
  users: Object.keys(users),
})}\n`);

function stop() {
  server.close();
  process.exit(0);
}
if (process.env.TESTKIT_OIDC_IGNORE_STDIN !== '1') {
  process.stdin.on('end', stop);
  process.stdin.on('close', stop);
  process.stdin.resume();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
