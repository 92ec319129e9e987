"""Verifies a countersign grant token with PyJWT, given only the issuer's discovery URL.

usage: verify_pyjwt.py ISSUER AUDIENCE TOKEN
Prints the verified claims as JSON and exits 0, or prints the error and exits 1.
"""
import json
import sys
import urllib.request

import jwt


def main() -> int:
    issuer, audience, token = sys.argv[1], sys.argv[2], sys.argv[3]
    with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=10) as r:
        metadata = json.load(r)
    if metadata["issuer"] != issuer:
        print(f"issuer mismatch: {metadata['issuer']!r}", file=sys.stderr)
        return 1
    jwks = jwt.PyJWKClient(metadata["jwks_uri"])
    try:
        key = jwks.get_signing_key_from_jwt(token)
        header = jwt.get_unverified_header(token)
        if header.get("typ", "").lower() not in ("at+jwt", "application/at+jwt"):
            raise jwt.InvalidTokenError(f"unexpected typ {header.get('typ')!r}")
        claims = jwt.decode(
            token,
            key.key,
            algorithms=["ES256", "EdDSA", "RS256"],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]},
        )
    except jwt.PyJWTError as e:
        print(f"rejected: {e}", file=sys.stderr)
        return 1
    print(json.dumps(claims))
    return 0


if __name__ == "__main__":
    sys.exit(main())
