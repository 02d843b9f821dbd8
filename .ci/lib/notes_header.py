#!/usr/bin/env python3
"""The chart's NOTES command that prints the Authorization header, run against the bridge.

usage: notes_header.py BINARY CHART RELEASE NAMESPACE WORKDIR FIXTURE [HELM-ARGS...]

Renders NOTES.txt (helm install --dry-run=client), takes its header command and runs it with a
stand-in `kubectl get secret` that hands its output option to the real kubectl's
`create secret --dry-run=client` of a credentials file, and a stand-in `base64` that takes only
what GNU's, BusyBox's and macOS's share (encoding without options: BusyBox's takes no
`--decode`, older macOS's no `-d`). Each
header it prints must open the webhook of the real bridge started with that file (200), and a
wrong one must not (401). The files: the chart's own Secret as rendered, and ones an operator
might write (a byte-order mark, CRLF line ends, comments, blank lines, indentation, a password
with spaces and colons). The two READMEs must show the same pipeline.
"""

import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

FILES = {
    "byte-order mark, CRLF, a comment, a blank line, an indented password with spaces and colons":
        "\ufeff# rotated 2026-12\r\n\r\n   ops:pa ss:w0rd  \r\nother:x\r\n",
    "a tab before the user, a comment after a blank line": "\n# ops\n\tops:s3cret\n",
}


def fail(msg):
    print(msg)
    sys.exit(1)


def notes(chart, release, namespace, helm_args):
    out = subprocess.run(
        ["helm", "install", release, chart, "--namespace", namespace, "--dry-run=client", *helm_args],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        fail(f"helm install --dry-run=client failed: {out.stderr.strip()}")
    if "NOTES:" not in out.stdout:
        fail("helm printed no NOTES")
    manifests, notes_text = out.stdout.split("NOTES:", 1)
    return manifests.split("\nHOOKS:", 1)[-1], notes_text


def header_command(notes_text):
    lines = notes_text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip().startswith("kubectl") and " get secret " in l), None)
    if start is None:
        fail("NOTES has no `kubectl ... get secret` command")
    command = []
    for line in lines[start:]:
        command.append(line.strip().rstrip("\\").strip())
        if not line.rstrip().endswith("\\"):
            break
    return " ".join(command)


def pipeline(command):
    """What follows the jsonpath: the part the READMEs must show as NOTES does."""
    return re.sub(r"^.*?-o (?:jsonpath|go-template)='[^']*'\s*", "", command)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, header, body):
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": header, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def dev_kafka(binary, workdir):
    """`qikchat-bridge dev-kafka` started, and its address: the bridge refuses credentials beside
    its embedded Kafka."""
    proc = subprocess.Popen([binary, "dev-kafka"], stdout=subprocess.PIPE, text=True,
                            stderr=open(os.path.join(workdir, "dev-kafka.log"), "w"))
    for line in proc.stdout:
        if line.startswith("bootstrap.servers="):
            return proc, line.strip().split("=", 1)[1]
    fail("dev-kafka printed no bootstrap.servers= line")


def bridge_answers(binary, brokers, creds_file, headers, fixture, workdir):
    """The status the bridge, reading `creds_file`, gives each header."""
    port, admin = free_port(), free_port()
    log = open(os.path.join(workdir, "bridge.log"), "w")
    proc = subprocess.Popen(
        [binary, "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
         "--kafka-brokers", brokers, "--auth-file", creds_file],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                fail(f"the bridge did not become ready: {open(log.name).read()[-2000:]}")
            time.sleep(0.05)
        body = open(fixture, "rb").read()
        return [post(f"http://127.0.0.1:{port}/webhook", h, body) for h in headers]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def main():
    binary, chart, release, namespace, workdir, fixture, *helm_args = sys.argv[1:]
    manifests, notes_text = notes(chart, release, namespace, helm_args)
    command = header_command(notes_text)
    for readme in ("README.md", os.path.join(chart, "README.md")):
        flat = re.sub(r"\\\n\s*", "", open(readme).read())
        if pipeline(command) not in flat:
            fail(f"{readme} does not show NOTES' header pipeline: {pipeline(command)}")

    chart_secret = [base64.b64decode(d["data"]["credentials"]).decode()
                    for d in yaml.safe_load_all(manifests) if d and d.get("kind") == "Secret"
                    and "credentials" in (d.get("data") or {})]
    if len(chart_secret) != 1:
        fail(f"expected the chart's credentials Secret once, found {len(chart_secret)}")
    files = {"the chart's own Secret": chart_secret[0], **FILES}

    bindir = os.path.join(workdir, "bin")
    os.makedirs(bindir, exist_ok=True)
    real_base64, real_kubectl = (
        subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True,
                       check=True).stdout.strip() for tool in ("base64", "kubectl"))
    with open(os.path.join(bindir, "base64"), "w") as f:
        f.write(f"""#!/bin/sh
# Only what GNU's, BusyBox's and macOS's base64 share: encoding without options.
case "$*" in
  "") exec {real_base64} ;;
  *) echo "base64: $* is not an option every base64 (GNU, BusyBox, macOS) takes" >&2; exit 64 ;;
esac
""")
    with open(os.path.join(bindir, "kubectl"), "w") as f:
        f.write(f"""#!/bin/sh
# `kubectl -n NS get secret NAME -o OUTPUT`: OUTPUT applied by the real kubectl to a Secret
# holding the file $QB_CREDENTIALS under the chart Secret's key, credentials.
out=
while [ $# -gt 0 ]; do
  case "$1" in -o) out="$2"; shift ;; -o*) out="${{1#-o}}" ;; esac
  shift
done
exec {real_kubectl} create secret generic notes-header --dry-run=client \\
  --from-file="credentials=$QB_CREDENTIALS" -o "$out"
""")
    for name in ("base64", "kubectl"):
        os.chmod(os.path.join(bindir, name), 0o755)

    kafka, brokers = dev_kafka(binary, workdir)
    try:
        for what, content in files.items():
            check_file(binary, brokers, command, bindir, what, content, fixture, workdir)
    finally:
        kafka.terminate()
        kafka.wait(timeout=30)
    print(json.dumps({"pipeline": pipeline(command)}))


def check_file(binary, brokers, command, bindir, what, content, fixture, workdir):
    """The header the command prints for `content` opens the bridge reading it; a wrong one not."""
    creds = os.path.join(workdir, "credentials")
    with open(creds, "w", newline="") as f:
        f.write(content)
    out = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, check=False,
        env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "LC_ALL": "C.UTF-8",
             "QB_CREDENTIALS": creds})
    header = out.stdout.strip()
    if out.returncode != 0 or out.stderr or not header.startswith("Basic ") or header == "Basic":
        fail(f"{what}: the command printed {header!r} (exit {out.returncode}, stderr {out.stderr.strip()!r})")
    wrong = "Basic " + base64.b64encode(b"ops:wrong").decode()
    got = bridge_answers(binary, brokers, creds, [header, wrong], fixture, workdir)
    if got != [200, 401]:
        fail(f"{what}: the bridge answered the printed header {got[0]} (want 200) and a wrong one {got[1]} (want 401)")
    print(f"{what}: the printed header is accepted (200), a wrong one refused (401)")


if __name__ == "__main__":
    main()
