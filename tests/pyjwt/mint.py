"""Mints JSON Web Tokens with PyJWT for sseloop's private-topic tests
(tests/it/private/), the way an application mints them for a Mercure-style
hub: `jwt.encode(claims, key, algorithm=...)`.

Reads a JSON list of {"claims": {...}, "key": "...", "alg": "HS256",
"headers": {...} (optional)} from standard input and prints a JSON list of
tokens. "alg": "none" signs with no key; an "RS..." algorithm signs with a
fresh RSA key (the server must refuse both whatever the key).
"""

import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


def key_for(spec):
    alg = spec["alg"]
    if alg == "none":
        return None
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return spec["key"]


def main():
    specs = json.load(sys.stdin)
    tokens = [
        jwt.encode(s["claims"], key_for(s), algorithm=s["alg"], headers=s.get("headers"))
        for s in specs
    ]
    json.dump(tokens, sys.stdout)


if __name__ == "__main__":
    main()
