"""Castellan (Barbican backend) against lockbox's REST API, as Nova and Cinder use it.

Run with Debian's /usr/bin/python3. argv[1] is a JSON document:
  {"endpoint": "https://127.0.0.1:PORT", "ca": "/path/ca.crt", "auth_url": "http://127.0.0.1:PORT/v3",
   "api_version": "v1" | null,            # null: Castellan discovers the version (GET /)
   "credential": {"kind": "password", "user": ..., "password": ..., "project": ...}
               | {"kind": "token", "token": ..., "project_id": ...},
   "steps": [{"op": "create_key", "length": 256}, {"op": "store_symmetric", "hex": ...},
             {"op": "store_passphrase", "text": ...}, {"op": "get", "id": ...},
             {"op": "list"}, {"op": "delete", "id": ...}, {"op": "get_missing", "id": ...},
             {"op": "clone", "id": ...}, {"op": "bench_get", "id": ..., "count": N}]}
Prints one JSON line: {"results": [...]} with, per step, what it returned and the HTTP requests
it took (counted at requests.Session.send, i.e. every request on the wire).
"""
import json
import sys
import time

import requests
from castellan import options
from castellan.common import exception
from castellan.common.credentials import keystone_password, keystone_token
from castellan.common.objects import passphrase, symmetric_key
from castellan.key_manager import API
from oslo_config import cfg

requests_sent = [0]
endpoint = [""]
_send = requests.Session.send


def counting_send(self, request, **kwargs):
    # Requests to the key manager only (Keystone logins are the credential's business).
    if request.url.startswith(endpoint[0]):
        requests_sent[0] += 1
    return _send(self, request, **kwargs)


requests.Session.send = counting_send


def main():
    spec = json.loads(sys.argv[1])
    endpoint[0] = spec["endpoint"]
    conf = cfg.ConfigOpts()
    options.set_defaults(
        conf,
        backend="barbican",
        barbican_endpoint=spec["endpoint"],
        barbican_api_version=spec.get("api_version"),
        auth_endpoint=spec["auth_url"],
    )
    conf([])
    conf.set_override("verify_ssl", True, group="barbican")
    conf.set_override("verify_ssl_path", spec["ca"], group="barbican")
    # Castellan polls a PENDING order with sleeps; lockbox's orders are ACTIVE at once.
    conf.set_override("number_of_retries", 5, group="barbican")
    km = API(conf)
    c = spec["credential"]
    if c["kind"] == "password":
        ctx = keystone_password.KeystonePassword(
            password=c["password"],
            auth_url=spec["auth_url"],
            username=c["user"],
            user_domain_name="Default",
            project_name=c["project"],
            project_domain_name="Default",
        )
    else:
        ctx = keystone_token.KeystoneToken(token=c["token"], auth_url=spec["auth_url"], project_id=c["project_id"])

    results = []
    for step in spec["steps"]:
        before = requests_sent[0]
        op = step["op"]
        out = {"op": op}
        if op == "create_key":
            out["id"] = km.create_key(ctx, algorithm="aes", length=step["length"])
        elif op == "store_symmetric":
            key = symmetric_key.SymmetricKey("AES", len(step["hex"]) * 4, bytes.fromhex(step["hex"]))
            out["id"] = km.store(ctx, key)
        elif op == "store_passphrase":
            out["id"] = km.store(ctx, passphrase.Passphrase(step["text"]))
        elif op == "get":
            obj = km.get(ctx, step["id"])
            encoded = obj.get_encoded()
            if isinstance(encoded, str):
                encoded = encoded.encode("utf-8")
            out.update(hex=encoded.hex(), type=type(obj).__name__, name=obj.name,
                       algorithm=getattr(obj, "algorithm", None), bit_length=getattr(obj, "bit_length", None))
        elif op == "clone":
            # Cinder's clone of an encrypted volume: a new key with the same bytes.
            out["id"] = km.store(ctx, km.get(ctx, step["id"]))
        elif op == "list":
            out["ids"] = sorted(o.id for o in km.list(ctx))
        elif op == "delete":
            km.delete(ctx, step["id"])
        elif op == "get_missing":
            try:
                km.get(ctx, step["id"])
                out["error"] = None
            except exception.ManagedObjectNotFoundError:
                out["error"] = "ManagedObjectNotFoundError"
            except exception.KeyManagerError as e:
                out["error"] = "KeyManagerError: %s" % e
        elif op == "bench_get":
            km.get(ctx, step["id"]).get_encoded()  # warm: the session's own login is not timed
            before = requests_sent[0]
            t0 = time.monotonic()
            for _ in range(step["count"]):
                km.get(ctx, step["id"]).get_encoded()
            out["seconds"] = time.monotonic() - t0
            out["count"] = step["count"]
        else:
            raise SystemExit("unknown op %s" % op)
        out["requests"] = requests_sent[0] - before
        results.append(out)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
