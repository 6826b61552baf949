#!/usr/bin/env python3
"""A stand-in for docker / k3d / kind / helm / kubectl, for tests of visionctl's real command paths on a
machine without a Kubernetes control plane (tests/visionctl/ops/test_orchestrate_fake_tools.py).

Installed into a temp bin dir under each tool's name (a launcher script calls this file). Every call
is appended as a JSON argv list to $FAKE_LOG; cluster/release existence lives in files under
$FAKE_STATE so a sequence of calls behaves like the real tools (create → exists → delete).
$FAKE_FAIL="<tool> <subcommand>" makes that call fail like the real tool would.
"""

import http.server
import json
import os
import sys
from pathlib import Path

tool = Path(sys.argv[1]).name
args = sys.argv[2:]
state = Path(os.environ["FAKE_STATE"])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps([tool, *args]) + "\n")

fail = os.environ.get("FAKE_FAIL", "")
if fail and [tool, *args][: len(fail.split())] == fail.split():
    print(f"Error: {fail} failed: simulated failure for the test", file=sys.stderr)
    sys.exit(1)


def has(*words):
    return all(w in args for w in words)


if tool == "docker":
    if has("version"):
        print("27.1.1")
    elif has("info"):
        if (state / "docker-down").exists():
            print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", file=sys.stderr)
            sys.exit(1)
        print("27.1.1")
    elif has("build"):
        print("#1 [internal] load build definition", file=sys.stderr)
    elif has("image", "inspect"):
        ref = args[-1]
        print("sha256:" + ref.encode().hex().ljust(64, "0")[:64])
elif tool == "k3d":
    cluster = state / "cluster"
    if args[:1] == ["version"]:
        print("k3d version v5.7.4\nk3s version v1.30.4-k3s1 (default)")
    elif args[:2] == ["cluster", "list"]:
        print(json.dumps([{"name": cluster.read_text()}] if cluster.exists() else []))
    elif args[:2] == ["cluster", "create"]:
        cluster.write_text(args[2])
    elif args[:2] == ["cluster", "delete"]:
        cluster.unlink(missing_ok=True)
elif tool == "helm":
    release = state / "release"
    if has("version"):
        print("v3.16.2+g13654a5")
    elif args[:1] == ["status"]:
        sys.exit(0 if release.exists() else 1)
    elif args[:2] == ["get", "values"]:
        values = state / "values.json"
        print(values.read_text() if values.exists() else "null")
    elif args[:1] == ["upgrade"] and "--reuse-values" in args:
        values = json.loads((state / "values.json").read_text()) if (state / "values.json").exists() else {}
        for i, a in enumerate(args):
            if a == "--set-json":
                key, _, raw = args[i + 1].partition("=")
                node = values
                *parents, leaf = key.split(".")
                for p in parents:
                    node = node.setdefault(p, {})
                node[leaf] = json.loads(raw)
        (state / "values.json").write_text(json.dumps(values))
        print("Release \"vision-ai\" has been upgraded. Happy Helming!")
    elif args[:2] == ["upgrade", "--install"]:
        release.write_text(json.dumps(args))
        print("Release \"vision-ai\" has been upgraded. Happy Helming!")
    elif args[:1] == ["uninstall"]:
        release.unlink(missing_ok=True)
elif tool == "kubectl":
    if has("version"):
        print(json.dumps({"clientVersion": {"gitVersion": "v1.31.2"}}))
    elif has("rollout", "status"):
        print("deployment successfully rolled out")
    elif has("logs"):
        print("2025-11-25T12:00:00Z INF |  https://quiet-fox-example.trycloudflare.com  |")
    elif has("get", "configmap"):
        stored = state / "configmap.json"
        if not stored.exists():
            print(f'Error from server (NotFound): configmaps "{args[args.index("configmap") + 1]}" not found',
                  file=sys.stderr)
            sys.exit(1)
        print(stored.read_text())
    elif has("create") or has("replace"):
        # The API server's optimistic concurrency: replace must carry the stored resourceVersion.
        body = json.loads(Path(args[args.index("-f") + 1]).read_text())
        stored = state / "configmap.json"
        current = json.loads(stored.read_text())["metadata"]["resourceVersion"] if stored.exists() else None
        if has("create") and current is not None:
            print("Error from server (AlreadyExists): configmaps already exists", file=sys.stderr)
            sys.exit(1)
        if has("replace") and body["metadata"].get("resourceVersion") != current:
            print("Error from server (Conflict): the object has been modified", file=sys.stderr)
            sys.exit(1)
        body["metadata"]["resourceVersion"] = str(int(current or 0) + 1)
        stored.write_text(json.dumps(body))
        print(f"configmap/{body['metadata']['name']} {'replaced' if has('replace') else 'created'}")
    elif has("get", "--raw"):
        # The API server's pod proxy: answered from $FAKE_STATE/raw.json (path → JSON body).
        raw = json.loads((state / "raw.json").read_text()) if (state / "raw.json").exists() else {}
        path = args[args.index("--raw") + 1]
        if path not in raw:
            print(f"Error from server (NotFound): {path}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps(raw[path]))
    elif has("get"):
        print((state / "get.json").read_text() if (state / "get.json").exists() else '{"items": []}')
    elif has("port-forward") and any(a.endswith(":8080") for a in args):
        # The backend Service: relay TCP to the real test backend on $FAKE_BACKEND_PORT.
        import socket
        import threading

        local = int(next(a for a in args if a.endswith(":8080")).split(":")[0])
        upstream = int(os.environ["FAKE_BACKEND_PORT"])
        listener = socket.create_server(("127.0.0.1", local))

        def pipe(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        while True:
            client, _ = listener.accept()
            server = socket.create_connection(("127.0.0.1", upstream))
            threading.Thread(target=pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=pipe, args=(server, client), daemon=True).start()
    elif has("port-forward"):
        local = int(next(a for a in args if a.endswith(":2000")).split(":")[0])

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"hostname": "quiet-fox-example.trycloudflare.com"}).encode()
                self.send_response(200 if self.path == "/quicktunnel" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        server = http.server.HTTPServer(("127.0.0.1", local), Handler)
        print(f"Forwarding from 127.0.0.1:{local} -> 2000", flush=True)
        server.serve_forever()
