#!/usr/bin/python3
# Validates a findings file against sr-writer/findings.schema.json with the jsonschema package
# (an independent check that the schema and the C++ parser agree).
#   /usr/bin/python3 check_findings_schema.py SCHEMA.json FINDINGS.json
# Exits 0 and prints "valid", or exits 1 and prints the first error.
# SPDX-License-Identifier: GPL-3.0-or-later
import json
import sys

import jsonschema


def main():
    schema = json.load(open(sys.argv[1]))
    jsonschema.Draft202012Validator.check_schema(schema)
    try:
        document = json.load(open(sys.argv[2]))
    except ValueError as e:
        print("invalid JSON: %s" % e)
        return 1
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        print("invalid: %s at %s" % (errors[0].message, "/".join(str(p) for p in errors[0].path)))
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
