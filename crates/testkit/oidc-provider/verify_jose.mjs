// Verifies a countersign grant token with panva `jose`, given only the issuer's discovery URL.
// usage: node verify_jose.mjs ISSUER AUDIENCE TOKEN
// Prints the verified claims as JSON and exits 0, or prints the error and exits 1.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, audience, token] = process.argv.slice(2);
try {
  const metadata = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();
  if (metadata.issuer !== issuer) throw new Error(`issuer mismatch: ${metadata.issuer}`);
  const jwks = createRemoteJWKSet(new URL(metadata.jwks_uri));
  const { payload } = await jwtVerify(token, jwks, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: ['ES256', 'EdDSA', 'RS256'],
    requiredClaims: ['exp', 'iat', 'nbf', 'sub', 'jti'],
  });
  console.log(JSON.stringify(payload));
} catch (e) {
  console.error(`rejected: ${e.code ?? ''} ${e.message}`);
  process.exit(1);
}
