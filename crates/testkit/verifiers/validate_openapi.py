"""Validates an OpenAPI 3.1 document with openapi-spec-validator.

usage: validate_openapi.py < openapi.json
Exits 0 when the document is valid; otherwise prints every error found and exits 1.
"""
import json
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator


def main() -> int:
    document = json.load(sys.stdin)
    try:
        errors = list(OpenAPIV31SpecValidator(document).iter_errors())
    except Exception as e:  # a reference to nowhere is raised, not reported
        print(f"the document cannot be read through: {e}", file=sys.stderr)
        return 1
    for error in errors:
        path = "/".join(str(p) for p in error.absolute_path)
        print(f"{path or '(root)'}: {error.message}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
