#!/usr/bin/env python3
"""Checks of rendered qikchat-bridge manifests, used by .ci/helm-check.sh.

Subcommands (each exits non-zero with a message on failure):

  static RENDERED [--help-text FILE]
      Invariants of the rendered chart that Kubernetes' schemas cannot express:
      restricted pod security, probes on the admin port the binary listens on,
      grace period longer than drain + flush, secrets only as files (no pod
      annotation derived from one, such as a checksum), env names that the binary
      really reads, selectors/ports that match. The workload is a
      Deployment, or with the durable spool a StatefulSet whose per-pod claim is
      mounted at BRIDGE_SPOOL_DIR.
  crds RENDERED
      Strict validation of the Prometheus Operator resources (ServiceMonitor,
      PrometheusRule), which kubernetes-validate has no schema for.
  rules RENDERED OUT
      Writes the groups of the rendered PrometheusRule to OUT (for promtool).
  check-config BINARY RENDERED WORKDIR
      Runs `BINARY <rendered args> --check-config` with `env -i` plus exactly the
      rendered container environment. Secret values come from Secrets the chart
      rendered, or dummies for Secrets that live outside the chart; files the pod
      would mount are created under WORKDIR and the paths rewritten to point there
      (the spool volume becomes an empty directory there).
      Also checks that secrets do not leak into the output, and that the binary
      really validates (a broken setting must exit 2).
  compose COMPOSE_FILE
      Consistency of deploy/docker-compose.yml with the bridge's interface.
  dashboard DASHBOARD ALERTS...
      The dashboard is valid Grafana JSON and every qikchat_bridge_* metric used by
      it and by the alert rules is one the bridge exports; a namespace variable (All:
      .*) scopes the job and instance variables, and every panel's selectors use all three.
  dockerfile DOCKERFILE VALUES
      The image agrees with the chart: non-root numeric USER equal to the chart's
      runAsUser, EXPOSEd ports equal to the chart's container ports, the binary as
      ENTRYPOINT, no HEALTHCHECK, a --locked release build.
  runtime-packages BINARY DOCKERFILE
      The Dockerfile's runtime stage (`AS runtime`) installs the Debian package of every
      library the binary links (its DT_NEEDED entries, found with ldd and dpkg -S), or the
      library comes with the base image (libc6, libgcc-s1): the image's own `ldd` check,
      without a Docker engine.
  readme VALUES README
      Every value of values.yaml is documented in the chart README.
  secret-names REDACT_RS SCHEMA HELPERS [PROSE...]
      The librdkafka property names the chart treats as secrets (the schema's
      kafka.properties patternProperties pattern, the templates' secretPropertyPattern,
      SECRET_PARTS here) are exactly those of the bridge's is_secret in REDACT_RS; and
      every list of them written out (ending with ssl_key) in SCHEMA, HELPERS and PROSE
      names them all.
  property-aliases NAMES_RS HELPERS
      The chart's propertyAliases and topicLevelProperties (how its canonicalProperty folds
      librdkafka's second names and the `topic.` prefix, for extraArgs' and extraEnv's refusals
      of a property the chart sets) equal ALIASES and TOPIC_LEVEL of NAMES_RS, and its
      canonical still folds them that way.
  flag-variables HELP HELPERS
      Every flag of the binary's --help whose [env: NAME] is not BRIDGE_<FLAG> is in the
      helpers' flagVariables with that NAME, and the table has no other entry.
  env-sources POD_TPL HELPERS
      Every variable the pod template sets itself has an entry in the helpers'
      envSources (the values it comes from, named when extraArgs or extraEnv would set
      it again), and envSources names no variable the template does not set.
  webhook-paths BINARY RENDERED WORKDIR CHART RELEASE NAMESPACE
      The chart (helm template CHART with config.webhookPath) accepts exactly the webhook
      paths the binary accepts (--check-config with RENDERED's environment and
      BRIDGE_WEBHOOK_PATH): every ASCII character but NUL, a few non-ASCII ones, and
      paths that are empty, relative or just "/".
  topic-events BINARY RENDERED WORKDIR CHART RELEASE NAMESPACE
      The chart (helm template CHART with a config.topics key) accepts exactly the event
      names the binary accepts in BRIDGE_TOPICS (--check-config with RENDERED's environment
      and the BRIDGE_TOPICS the chart renders, or EVENT=TOPIC for a key it refuses): every
      ASCII character but NUL inside a name, the whitespace Rust's str::trim removes (and
      a few look-alikes it keeps) at either end and inside, ',' and '=' anywhere, the empty
      name.
"""

import base64
import json
import os
import re
import subprocess
import sys
import urllib.parse

import yaml

# The binary's configuration interface (flags <-> env). Kept in sync with the README's
# configuration table; when the binary is available its --help output is checked too.
BRIDGE_ENV = {
    "BRIDGE_LISTEN", "BRIDGE_ADMIN_LISTEN", "KAFKA_BOOTSTRAP_SERVERS", "BRIDGE_AUTH",
    "BRIDGE_AUTH_FILE", "BRIDGE_INSECURE_DISABLE_AUTH", "BRIDGE_WEBHOOK_PATH",
    "BRIDGE_ACK_TIMEOUT", "BRIDGE_MAX_BODY_BYTES", "BRIDGE_MAX_IN_FLIGHT",
    "BRIDGE_MAX_IN_FLIGHT_BYTES", "BRIDGE_MAX_CONNECTIONS", "BRIDGE_TOPIC_PREFIX", "BRIDGE_TOPICS",
    "BRIDGE_FALLBACK_TOPIC", "BRIDGE_DEADLETTER_TOPIC", "BRIDGE_KEY_STRATEGY",
    "BRIDGE_HEADER_READ_TIMEOUT", "BRIDGE_IDLE_TIMEOUT", "BRIDGE_BODY_READ_TIMEOUT", "BRIDGE_SHUTDOWN_DELAY",
    "BRIDGE_SHUTDOWN_GRACE", "BRIDGE_FLUSH_TIMEOUT", "BRIDGE_LOG_FORMAT",
    "BRIDGE_LOG_PHONE_NUMBERS", "BRIDGE_EMBEDDED_PARTITIONS", "BRIDGE_SPOOL_DIR",
    "BRIDGE_SPOOL_MAX_BYTES", "BRIDGE_CLOUDEVENTS", "BRIDGE_CLOUDEVENTS_SOURCE", "RUST_LOG",
    "BRIDGE_HTTP1_ONLY", "BRIDGE_REPLAY_MAX_RATE", "BRIDGE_SPOOL_WRITE_BUDGET",
}

# Substrings that make a librdkafka property name a secret to the bridge
# (src/kafka_props/redact.rs is_secret; `secret-names` checks that they agree).
SECRET_PARTS = ("password", "passphrase", "private.key", "jaas", "secret",
                "sasl.oauthbearer.config", "sasl.oauthbearer.extensions", "ssl.key.pem", "ssl_key")

# The bridge's HTTP/1 read buffer per connection, librdkafka's queue by default
# (queue.buffering.max.kbytes) and the rest of the process: the README's memory bound.
READ_BUFFER = 16 * 1024
DEFAULT_QUEUE_KBYTES = 65536
BASE_MEMORY = 100 * 2**20

from metric_names import HISTOGRAMS, METRICS, PROCESS_METRICS  # noqa: E402

QIKCHAT_LIMIT_MS = 2000


class CheckError(Exception):
    pass


def fail(msg):
    raise CheckError(msg)


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    if len(found) != 1:
        fail(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def duration_ms(text):
    """Parses the humantime forms used by the chart ("1500ms", "5s", "1m", "1m 30s")."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
    parts = re.findall(r"(\d+)\s*([a-z]+)", str(text))
    if not parts or re.sub(r"(\d+)\s*([a-z]+)|\s", "", str(text)):
        fail(f"cannot parse duration {text!r}")
    total = 0
    for n, unit in parts:
        if unit not in units:
            fail(f"unknown duration unit in {text!r}")
        total += int(n) * units[unit]
    return total


def port_of(addr):
    m = re.search(r":(\d+)$", addr or "")
    if not m:
        fail(f"no port in listen address {addr!r}")
    return int(m.group(1))


WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def workload(docs):
    """The bridge's Deployment, or its StatefulSet when the durable spool is on; never both."""
    found = [d for d in docs if d.get("kind") in WORKLOAD_KINDS]
    if len(found) != 1:
        fail(f"expected exactly one Deployment or StatefulSet, found {[d.get('kind') for d in found]}")
    return found[0]


def bridge_container(deploy):
    containers = deploy["spec"]["template"]["spec"]["containers"]
    for c in containers:
        if c["name"] == "qikchat-bridge":
            return c
    fail(f"no container named qikchat-bridge in the {deploy.get('kind')}")


_QUANTITY = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


def quantity_bytes(q):
    m = re.fullmatch(r"([0-9]+)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?", str(q).strip())
    if not m:
        fail(f"cannot parse storage quantity {q!r}")
    return int(m.group(1)) * _QUANTITY[m.group(2) or ""]


def plain_env(container):
    return {e["name"]: e.get("value") for e in (container.get("env") or []) if "valueFrom" not in e}


def help_env_names(help_file):
    """The env names of the binary's --help ([env: NAME]); None without a help file. A help text
    without any is an error: the check would silently fall back to BRIDGE_ENV."""
    if not help_file:
        return None
    with open(help_file, encoding="utf-8", errors="replace") as f:
        text = f.read()
    names = set(re.findall(r"\[env:\s*([A-Z][A-Z0-9_]*)", text))
    if not names:
        fail(f"{help_file}: the binary's --help names no [env: ...] variables, so the env names "
             f"cannot be checked against it (is it the bridge's --help?): {text[:200]!r}")
    return names


_BLANK = "[ \t\n\r\f\v]"
_URL_USER = r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@ \t\n\r\f\v]*:"


def has_url_password(value):
    """Whether `value` holds a URL's password (scheme://user:password@...) as
    src/kafka_props/passwords.rs finds them, and as the chart's qikchat-bridge.hasUrlPassword
    refuses them: one holding an unescaped `/`, `?`, `#` or blank too. The user alone holds no
    secret, nor, after a host:port, an `@` in a query's value (?login_hint=a@b), nor an `@` that
    belongs to the next `,scheme://` entry."""
    for found in re.finditer(_URL_USER + "[^@]*@", value):
        after = re.sub("^" + _URL_USER, "", found.group(0))
        own_at = re.fullmatch(r"[0-9]*(?:/[^?#@]*)?\?(?:[^#@]*&)?[^&#@]*=[^&#@]*@", after)
        next_url = re.search("," + _BLANK + r"*[A-Za-z][A-Za-z0-9+.-]*://", after)
        if not (own_at or next_url):
            return True
    return False


def is_secret(name):
    return any(p in name for p in SECRET_PARTS)


def is_service_link(name):
    """src/kafka_props/names.rs is_service_link: variables Kubernetes makes for a Service, which
    the bridge does not read as properties."""
    protocol_port = re.search(r"_PORT_[0-9]+_(TCP|UDP|SCTP)", name)
    return (name.endswith("_PORT") or name.endswith("_SERVICE_HOST") or "_SERVICE_PORT" in name
            or bool(protocol_port))


def env_property(name):
    """The librdkafka property a KAFKA_* variable gives a value of its own, as the bridge maps it
    (kafka_props.rs overrides, names.rs env_to_property); None for a variable it does not read
    as one (KAFKA_BOOTSTRAP_SERVERS, a service link, a *_FILE variable, which names a file the
    property is read from, a run of four or more underscores, which it refuses)."""
    if (not name.startswith("KAFKA_") or name == "KAFKA_BOOTSTRAP_SERVERS" or is_service_link(name)
            or name.endswith("_FILE")):
        return None
    rest = name[len("KAFKA_"):]
    if not rest:
        return None
    out = []
    for run, text in re.findall(r"(_+)|([^_]+)", rest):
        if text:
            out.append(text.lower())
        elif len(run) > 3:
            return None
        else:
            out.append({1: ".", 2: "_", 3: "-"}[len(run)])
    return "".join(out)


def kafka_property_args(args):
    """(flag, NAME, VALUE) of every -X/--kafka-property argument, in the forms clap accepts."""
    out = []
    i = 0
    while i < len(args):
        a = args[i]
        pair = None
        if a in ("-X", "--kafka-property"):
            pair = args[i + 1] if i + 1 < len(args) else ""
            i += 1
        elif a.startswith("--kafka-property="):
            pair = a[len("--kafka-property="):]
        elif a.startswith("-X"):
            pair = a[2:].removeprefix("=")
        if pair is not None:
            name, _, value = pair.partition("=")
            out.append((a, name.strip(), value))
        i += 1
    return out


# --------------------------------------------------------------------------- static

def cmd_static(rendered, help_file=None):
    docs = load_docs(rendered)
    errors = []

    def check(cond, msg):
        if not cond:
            errors.append(msg)

    def nulls(node, path):
        if node is None:
            errors.append(f"rendered manifest has an empty (null) value at {path}")
        elif isinstance(node, dict):
            for k, v in node.items():
                nulls(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                nulls(v, f"{path}[{i}]")

    for d in docs:
        nulls(d, f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}")

    deploy = workload(docs)
    kind = deploy["kind"]
    pod = deploy["spec"]["template"]["spec"]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    selector = deploy["spec"]["selector"]["matchLabels"]
    c = bridge_container(deploy)
    env = plain_env(c)
    env_names = [e["name"] for e in (c.get("env") or [])]

    # Restricted pod security standard.
    psc = pod.get("securityContext", {})
    csc = c.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod securityContext.runAsNonRoot must be true")
    check(psc.get("runAsUser", 1) != 0 and csc.get("runAsUser", 1) != 0, "must not run as UID 0")
    check((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault", "pod seccompProfile must be RuntimeDefault")
    check(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    check(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    check(csc.get("privileged") in (None, False), "container must not be privileged")
    check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), "capabilities must drop ALL")
    check(not (csc.get("capabilities") or {}).get("add"), "no capabilities may be added")
    check(pod.get("automountServiceAccountToken") is False, "automountServiceAccountToken must be false")
    check(pod.get("enableServiceLinks") is False, "enableServiceLinks must be false (KAFKA_* service-link variables)")
    check(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), "no host namespaces")

    # Resources.
    res = c.get("resources") or {}
    check((res.get("requests") or {}).get("cpu") and (res.get("requests") or {}).get("memory"), "cpu and memory requests must be set")
    check((res.get("limits") or {}).get("memory"), "a memory limit must be set")
    # The memory limit holds the README's bound: bodies, librdkafka's queue, the connections'
    # read buffers, ~100 MiB, and with the spool its waiting writes and five times replay's batch
    # (at most 8 MiB and one body; replay's peak was measured at about five times the batch).
    limit = str((res.get("limits") or {}).get("memory") or "")
    if re.fullmatch(r"[0-9]+(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?", limit):
        # -X wins over KAFKA_*, as in the bridge.
        # The bridge's default holds one record of the largest size (kafka_props::queue_kbytes).
        record = max(1_000_000, int(env.get("BRIDGE_MAX_BODY_BYTES") or 1048576) + 65536)
        default_kb = max(DEFAULT_QUEUE_KBYTES, -(-record // 1024))
        queue_kb = str(env.get("KAFKA_QUEUE_BUFFERING_MAX_KBYTES") or default_kb)
        for _, name, value in kafka_property_args([str(a) for a in (c.get("args") or [])]):
            if name == "queue.buffering.max.kbytes":
                queue_kb = value
        check(queue_kb.isdigit(), f"queue.buffering.max.kbytes {queue_kb!r} is not a whole number of KiB")
        queue_kb = int(queue_kb) if queue_kb.isdigit() else 0
        body = int(env.get("BRIDGE_MAX_BODY_BYTES") or 1048576)
        need = (int(env.get("BRIDGE_MAX_IN_FLIGHT_BYTES") or 96 * 2**20)
                + int(env.get("BRIDGE_MAX_IN_FLIGHT") or 1024) * 65536
                + queue_kb * 1024
                + int(env.get("BRIDGE_MAX_CONNECTIONS") or 4096) * READ_BUFFER
                + BASE_MEMORY)
        if env.get("BRIDGE_SPOOL_DIR"):
            need += 64 * 2**20 + 5 * (8 * 2**20 + body)
        check(quantity_bytes(limit) >= need,
              f"memory limit {limit} is below the bridge's bound ({need} bytes: bodies, librdkafka queue, "
              "connections x 16 KiB, 100 MiB, the spool's writes and replay)")

    # Ports and probes match the listeners the binary is told to use.
    ports = {p["name"]: p["containerPort"] for p in (c.get("ports") or [])}
    check("BRIDGE_LISTEN" in env and "BRIDGE_ADMIN_LISTEN" in env, "BRIDGE_LISTEN and BRIDGE_ADMIN_LISTEN must be set")
    if "BRIDGE_LISTEN" in env:
        check(ports.get("http") == port_of(env["BRIDGE_LISTEN"]), "containerPort http != port of BRIDGE_LISTEN")
    if "BRIDGE_ADMIN_LISTEN" in env:
        check(ports.get("admin") == port_of(env["BRIDGE_ADMIN_LISTEN"]), "containerPort admin != port of BRIDGE_ADMIN_LISTEN")
    # Every capability is dropped: a non-root bridge cannot bind a port below 1024 where the
    # runtime keeps net.ipv4.ip_unprivileged_port_start at 1024 (containerd 1.x).
    for name, port in ports.items():
        check(port >= 1024, f"containerPort {name} ({port}) is below 1024, which the non-root bridge without "
              "capabilities cannot bind")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        hg = (c.get(probe) or {}).get("httpGet") or {}
        check(hg.get("path") == path, f"{probe} must GET {path}")
        check(hg.get("port") in ("admin", ports.get("admin")), f"{probe} must use the admin port")
    if c.get("startupProbe"):
        hg = c["startupProbe"].get("httpGet") or {}
        check(hg.get("port") in ("admin", ports.get("admin")) and hg.get("path") == "/livez", "startupProbe must GET /livez on the admin port")

    # Shutdown: Kubernetes must wait longer than the bridge's delay + drain + flush + its own
    # waits at exit (admin server drain, readiness metadata call, the Kafka client's teardown,
    # runtime shutdown: 1 s each, and 2 s for the file watches and producer replacements to stop:
    # 6 s, as _helpers.tpl counts),
    # and with the spool its replay's cut-off (one more flush timeout), its last probe of the
    # brokers (1 s) and closing the file (2 s).
    defaults = {"BRIDGE_SHUTDOWN_DELAY": "0s", "BRIDGE_SHUTDOWN_GRACE": "10s", "BRIDGE_FLUSH_TIMEOUT": "5s"}
    shutdown_ms = sum(duration_ms(env.get(k) or v) for k, v in defaults.items()) + 6000
    if env.get("BRIDGE_SPOOL_DIR"):
        shutdown_ms += duration_ms(env.get("BRIDGE_FLUSH_TIMEOUT") or "5s") + 3000
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    check(tgps * 1000 > shutdown_ms, f"terminationGracePeriodSeconds {tgps}s is not longer than delay+grace+flush+6 s ({shutdown_ms} ms)")
    delay = duration_ms(env.get("BRIDGE_SHUTDOWN_DELAY") or "0s")
    check(delay > 0, "BRIDGE_SHUTDOWN_DELAY should be > 0 so endpoints are removed before the drain")
    # A stop of the bridge's own (no pod deletion): only the readiness probe takes the pod out of
    # the endpoints, after up to periodSeconds x failureThreshold (+ ~1 s to propagate), and the
    # port closes after the delay.
    rp = c.get("readinessProbe") or {}
    unready_ms = (rp.get("periodSeconds", 10) * rp.get("failureThreshold", 3) + 1) * 1000
    check(delay >= unready_ms, f"BRIDGE_SHUTDOWN_DELAY ({delay} ms) is shorter than the readiness probe's "
          f"periodSeconds x failureThreshold + 1 s ({unready_ms} ms): a bridge that stops on its own "
          "closes its port while the Service still sends to it")
    ack = duration_ms(env.get("BRIDGE_ACK_TIMEOUT") or "1500ms")
    check(ack < QIKCHAT_LIMIT_MS, f"BRIDGE_ACK_TIMEOUT {ack} ms is not below Qikchat's 2 s limit")

    # Secrets never as plain values; Basic credentials only through a mounted file. No TOKEN
    # here: the bridge reads no such variable of its own, and the only librdkafka property
    # holding it, sasl.oauthbearer.token.endpoint.url, is an address, not a secret (is_secret).
    for e in (c.get("env") or []):
        name = e["name"]
        if re.search(r"PASSWORD|SECRET", name) and not name.endswith("_FILE"):
            check("value" not in e, f"{name} must not be a plain env value (use a *_FILE variable)")
        prop = env_property(name)
        if prop and is_secret(prop):
            from_secret = "secretKeyRef" in (e.get("valueFrom") or {})
            check(from_secret or ("value" not in e and "valueFrom" not in e),
                  f"env {name} sets {prop}, a secret librdkafka property, other than from a Secret "
                  "(use KAFKA_<NAME>_FILE or valueFrom.secretKeyRef)")
    check("BRIDGE_AUTH" not in env_names, "BRIDGE_AUTH puts credentials in the pod spec; use BRIDGE_AUTH_FILE")
    args = [str(a) for a in (c.get("args") or [])]
    for a in args:
        flag = re.match(r"--(auth|auth-file|spool-dir|spool-write-budget)(=|$)", a)
        check(not flag, f"argument {a.split('=')[0]}: credentials, their file and the spool come from "
              "auth.* and persistence.*, not from arguments")
    for flag, name, _ in kafka_property_args(args):
        check(name and not is_secret(name.lower()),
              f"argument {flag} {name}=...: a secret librdkafka property (or none) in the pod's arguments")
    # A URL's password in any value (https://user:pass@idp/token): a secret to the bridge
    # (src/kafka_props/passwords.rs), never in the arguments or a plain env value.
    for a in args:
        check(not has_url_password(a), "an argument holds a URL with a password (user:password@)")
    for e in (c.get("env") or []):
        check(not has_url_password(str(e.get("value", ""))),
              f"env {e['name']} holds a URL with a password (user:password@) as a plain value")
    # No pod annotation derived from a Secret: everything in a rendered Secret but the password
    # is known, so its hash (a checksum/<secret> annotation) lets anyone who can read pods guess
    # the password offline. The bridge reads the mounted files again, so no rollout is needed.
    secret_values = set()
    for sec in by_kind(docs, "Secret"):
        for v in (sec.get("data") or {}).values():
            secret_values |= {str(v), base64.b64decode(str(v)).decode("utf-8", "replace")}
        secret_values |= {str(v) for v in (sec.get("stringData") or {}).values()}
    secret_values = {v.strip() for v in secret_values if len(v.strip()) >= 8}
    for key, value in ((deploy["spec"]["template"].get("metadata") or {}).get("annotations") or {}).items():
        value = str(value)
        check(not key.startswith("checksum/") and not re.fullmatch(r"[0-9a-fA-F]{32,}", value)
              and not any(v in value for v in secret_values),
              f"pod annotation {key} looks derived from a Secret (a checksum or its content): anyone who "
              "can read pods could guess the password from it; the bridge reads the mounted files again, "
              "so no annotation is needed to roll the pods")
    insecure = env.get("BRIDGE_INSECURE_DISABLE_AUTH") == "true"
    check(insecure or "BRIDGE_AUTH_FILE" in env, "BRIDGE_AUTH_FILE must be set unless auth is explicitly disabled")
    check("KAFKA_BOOTSTRAP_SERVERS" in env and env["KAFKA_BOOTSTRAP_SERVERS"], "KAFKA_BOOTSTRAP_SERVERS must be set")

    # Only names the binary reads. KAFKA_* are librdkafka properties (any name).
    help_names = help_env_names(help_file)
    for name in env_names:
        if name.startswith("KAFKA_"):
            continue
        check(name in BRIDGE_ENV, f"env {name} is not part of the bridge's configuration interface")
        if help_names is not None and name != "RUST_LOG":
            check(name in help_names, f"env {name} does not appear in the binary's --help output")

    # Files referenced by env must be on read-only secret mounts.
    mounts = {m["mountPath"]: m for m in (c.get("volumeMounts") or [])}
    volumes = {v["name"]: v for v in (pod.get("volumes") or [])}
    for name, value in env.items():
        if value and (name.endswith("_FILE") or name.endswith("_LOCATION")):
            mp = next((p for p in mounts if value.startswith(p.rstrip("/") + "/")), None)
            check(mp is not None, f"{name}={value} is not under a volume mount")
            if mp:
                check(mounts[mp].get("readOnly") is True, f"mount {mp} for {name} must be readOnly")
                vol = volumes.get(mounts[mp]["name"], {})
                check("secret" in vol or "projected" in vol, f"{name} must come from a Secret volume")

    # Secret volumes are mounted 0440 (root and the fsGroup): a fixed non-root user needs the
    # fsGroup to read them.
    if psc.get("runAsUser") is not None and psc.get("fsGroup") is None:
        for v in pod.get("volumes") or []:
            if "secret" in v or "projected" in v:
                mode = (v.get("secret") or v.get("projected") or {}).get("defaultMode", 0o644)
                check(mode & 0o004, f"volume {v['name']} (mode {mode:o}) is unreadable for runAsUser "
                      f"{psc['runAsUser']} without fsGroup")

    # The durable spool: a writable volume of its own per pod, which only a StatefulSet's
    # claim templates give (a Deployment's pods would share one claim or lose the spool).
    claims = {t["metadata"]["name"]: t for t in (deploy["spec"].get("volumeClaimTemplates") or [])}
    spool_dir = env.get("BRIDGE_SPOOL_DIR")
    if kind == "StatefulSet":
        check(spool_dir, "a StatefulSet is only rendered for the durable spool, but BRIDGE_SPOOL_DIR is not set")
        check(claims, "the StatefulSet has no volumeClaimTemplates")
        check(deploy["spec"].get("serviceName") in {s["metadata"]["name"] for s in by_kind(docs, "Service")},
              "StatefulSet serviceName is not a Service of the chart")
        check(deploy["spec"].get("podManagementPolicy") == "Parallel", "StatefulSet pods are independent: podManagementPolicy Parallel")
        retention = deploy["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
        check(retention.get("whenScaled") in ("Retain", "Delete") and retention.get("whenDeleted") in ("Retain", "Delete"),
              "StatefulSet must state its persistentVolumeClaimRetentionPolicy")
        for t in claims.values():
            check(set(t["metadata"].get("labels", {}).items()) <= set(selector.items()),
                  "claim template labels must be stable selector labels (volumeClaimTemplates are immutable)")
            modes = t["spec"].get("accessModes") or []
            check(modes and "ReadOnlyMany" not in modes, f"claim {t['metadata']['name']} must be writable")
        check(psc.get("fsGroup") is not None or psc.get("runAsUser") is None,
              "the spool volume needs fsGroup for the non-root user to write it")
        # The bridge makes its spool files 0600: only the kubelet's full walk (Always, the
        # default) gives the fsGroup access back when the user changes; OnRootMismatch skips it.
        check(psc.get("fsGroupChangePolicy", "Always") == "Always",
              "the spool volume needs fsGroupChangePolicy Always (the default): with OnRootMismatch the "
              "bridge's 0600 spool files stay unreadable to another runAsUser and the pod crash-loops")
        for t in pod.get("topologySpreadConstraints") or []:
            check("pod-template-hash" not in (t.get("matchLabelKeys") or []), "StatefulSet pods have no pod-template-hash label")
    if spool_dir:
        mp = next((p for p in sorted(mounts, key=len, reverse=True)
                   if spool_dir == p.rstrip("/") or spool_dir.startswith(p.rstrip("/") + "/")), None)
        check(mp is not None, f"BRIDGE_SPOOL_DIR={spool_dir} is not on a volume (the root filesystem is read-only)")
        if mp:
            check(not mounts[mp].get("readOnly"), f"the spool mount {mp} must be writable")
            vol = mounts[mp]["name"]
            if kind == "StatefulSet":
                check(vol in claims, f"the spool mount {mp} must come from a volumeClaimTemplate (one claim per pod)")
            if vol in claims:
                check(vol not in volumes, f"volume {vol} is both a pod volume and a claim template")
                size = quantity_bytes(claims[vol]["spec"]["resources"]["requests"]["storage"])
                limit = int(env.get("BRIDGE_SPOOL_MAX_BYTES") or 1073741824)
                body = int(env.get("BRIDGE_MAX_BODY_BYTES") or 1048576)
                # The spool's file takes about 1.25 times its records (src/spool/dir.rs).
                check(body <= limit and limit * 5 <= size * 4,
                      f"need BRIDGE_MAX_BODY_BYTES ({body}) <= BRIDGE_SPOOL_MAX_BYTES ({limit}) <= 80% of the claim size ({size})")
        # The time kept back for the spool's write, as the bridge checks --spool-write-budget
        # (src/config/bounds.rs): greater than zero, leaving Kafka at least 5 ms of the ack timeout.
        if "BRIDGE_SPOOL_WRITE_BUDGET" in env:
            budget = duration_ms(env["BRIDGE_SPOOL_WRITE_BUDGET"])
            check(0 < budget <= ack - 5,
                  f"BRIDGE_SPOOL_WRITE_BUDGET ({budget} ms) must be greater than zero and leave Kafka at "
                  f"least 5 ms of BRIDGE_ACK_TIMEOUT ({ack} ms): the bridge refuses it at start-up")
    else:
        for name in ("BRIDGE_SPOOL_MAX_BYTES", "BRIDGE_REPLAY_MAX_RATE", "BRIDGE_SPOOL_WRITE_BUDGET"):
            check(name not in env, f"{name} without BRIDGE_SPOOL_DIR")

    # Labels, selectors, ports of the other objects.
    check(all(pod_labels.get(k) == v for k, v in selector.items()), f"pod labels do not match the {kind} selector")
    name = deploy["metadata"]["name"]
    exposed = set()
    for svc in by_kind(docs, "Service"):
        check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selector does not match the pods")
        for p in svc["spec"]["ports"]:
            check(p["targetPort"] in ports or p["targetPort"] in ports.values(), f"Service port {p['name']} targets an unknown port")
        names = {p["name"] for p in svc["spec"]["ports"]}
        exposed |= names
        check(names <= {"http", "admin"}, f"Service {svc['metadata']['name']} exposes unknown ports {names}")
        svc_type = svc["spec"].get("type", "ClusterIP")
        check(svc_type == "ClusterIP" or "admin" not in names,
              f"Service {svc['metadata']['name']} of type {svc_type} exposes the admin port (/metrics) outside the cluster")
    check(exposed == {"http", "admin"}, "the chart's Services must expose http and admin")
    svc_names = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    for ing in by_kind(docs, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                check(p["path"] == env.get("BRIDGE_WEBHOOK_PATH", "/webhook"), f"Ingress exposes {p['path']}, not only the webhook path")
                check(p["pathType"] == "Exact", "Ingress path must be Exact")
                b = p["backend"]["service"]
                check(b["name"] in svc_names, "Ingress backend is not the chart's Service")
                check(b["port"].get("name") == "http", "Ingress must route to the http port only")
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        check(ref["kind"] == kind and ref["name"] == name and ref.get("apiVersion") == "apps/v1", f"HPA does not target the {kind}")
        check("replicas" not in deploy["spec"], f"{kind} must not set replicas when the HPA manages them")
        check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], "HPA minReplicas > maxReplicas")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    fewest = hpas[0]["spec"].get("minReplicas", 1) if hpas else deploy["spec"].get("replicas", 1)
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        check(all(pod_labels.get(k) == v for k, v in sel.items()), "PDB selector does not match the pods")
        # Kubernetes rounds a percentage up; a budget that allows no eviction of the fewest pods
        # the workload runs blocks every node drain for ever.
        def scaled(v, n):
            s = str(v)
            return -(-int(s[:-1]) * n // 100) if s.endswith("%") else int(s)
        spec = pdb["spec"]
        if "maxUnavailable" in spec:
            allowed = scaled(spec["maxUnavailable"], fewest)
        else:
            allowed = fewest - scaled(spec.get("minAvailable", 1), fewest)
        check(allowed > 0, f"the PodDisruptionBudget allows no eviction of {fewest} replica(s): node drains "
              "would block for ever")
    for np in by_kind(docs, "NetworkPolicy"):
        sel = np["spec"]["podSelector"]["matchLabels"]
        check(all(pod_labels.get(k) == v for k, v in sel.items()), "NetworkPolicy does not select the pods")
        in_ports = {p["port"] for r in np["spec"].get("ingress", []) for p in r.get("ports", [])}
        check({"http", "admin"} <= in_ports, "NetworkPolicy must admit the http and admin ports")
        if "Egress" in np["spec"].get("policyTypes", []):
            eg_ports = {p["port"] for r in np["spec"].get("egress", []) for p in r.get("ports", [])}
            for server in env.get("KAFKA_BOOTSTRAP_SERVERS", "").split(","):
                check(port_of(server.strip()) in eg_ports, f"NetworkPolicy egress does not allow bootstrap server {server}")
            check(53 in eg_ports, "NetworkPolicy egress must allow DNS")
            # Without a token from the identity provider no broker lets the bridge in.
            for _, name, value in kafka_property_args(args):
                if name == "sasl.oauthbearer.token.endpoint.url":
                    url = urllib.parse.urlsplit(value)
                    port = url.port or (80 if url.scheme == "http" else 443)
                    check(port in eg_ports, f"NetworkPolicy egress does not allow the OAuth 2 token endpoint {value}")
    for sm in by_kind(docs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            check(ep.get("port") == "admin" and ep.get("path", "/metrics") == "/metrics", "ServiceMonitor must scrape admin /metrics")
        sel = sm["spec"]["selector"]["matchLabels"]
        check(any(all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items()) for s in svc_names.values()),
              "ServiceMonitor selector matches no Service of the chart")
    if pod.get("topologySpreadConstraints"):
        for t in pod["topologySpreadConstraints"]:
            sel = t["labelSelector"]["matchLabels"]
            check(all(pod_labels.get(k) == v for k, v in sel.items()), "topology spread selector does not match the pods")

    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"static checks passed ({len(docs)} objects)")


# --------------------------------------------------------------------------- CRDs

def _strict(props, required=(), extra=None):
    o = {"type": "object", "additionalProperties": False, "properties": props}
    if required:
        o["required"] = list(required)
    if extra:
        o.update(extra)
    return o


_STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DUR = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_META = _strict({"name": {"type": "string", "minLength": 1}, "namespace": {"type": "string"},
                 "labels": _STRMAP, "annotations": _STRMAP}, ["name"])
_LABEL_SELECTOR = _strict({"matchLabels": _STRMAP, "matchExpressions": {"type": "array"}})
_RELABEL = {"type": "array", "items": _strict({
    "sourceLabels": {"type": "array", "items": {"type": "string"}}, "separator": {"type": "string"},
    "targetLabel": {"type": "string"}, "regex": {"type": "string"}, "modulus": {"type": "integer"},
    "replacement": {"type": "string"},
    "action": {"enum": ["replace", "Replace", "keep", "Keep", "drop", "Drop", "hashmod", "HashMod",
                        "labelmap", "LabelMap", "labeldrop", "LabelDrop", "labelkeep", "LabelKeep",
                        "lowercase", "Lowercase", "uppercase", "Uppercase", "keepequal", "KeepEqual",
                        "dropequal", "DropEqual"]}})}
# Subsets of the monitoring.coreos.com/v1 CRD schemas (the fields a chart may use),
# strict about unknown fields.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _strict({
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": _META,
        "spec": _strict({
            "selector": _LABEL_SELECTOR,
            "namespaceSelector": _strict({"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}}),
            "jobLabel": {"type": "string"}, "targetLabels": {"type": "array"}, "podTargetLabels": {"type": "array"},
            "sampleLimit": {"type": "integer"}, "targetLimit": {"type": "integer"},
            "endpoints": {"type": "array", "minItems": 1, "items": _strict({
                "port": {"type": "string"}, "targetPort": {"type": ["string", "integer"]},
                "path": {"type": "string"}, "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                "params": {"type": "object"}, "interval": _DUR, "scrapeTimeout": _DUR,
                "honorLabels": {"type": "boolean"}, "honorTimestamps": {"type": "boolean"},
                "relabelings": _RELABEL, "metricRelabelings": _RELABEL,
                "tlsConfig": {"type": "object"}, "basicAuth": {"type": "object"},
                "authorization": {"type": "object"}, "followRedirects": {"type": "boolean"},
                "enableHttp2": {"type": "boolean"}, "filterRunning": {"type": "boolean"}})},
        }, ["selector", "endpoints"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _strict({
        "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": _META,
        "spec": _strict({"groups": {"type": "array", "minItems": 1, "items": _strict({
            "name": {"type": "string", "minLength": 1}, "interval": _DUR, "limit": {"type": "integer"},
            "query_offset": _DUR, "labels": _STRMAP,
            "rules": {"type": "array", "minItems": 1, "items": _strict({
                "alert": {"type": "string"}, "record": {"type": "string"},
                "expr": {"type": ["string", "integer"]}, "for": _DUR, "keep_firing_for": _DUR,
                "labels": _STRMAP, "annotations": _STRMAP}, ["expr"])}}, ["name"])}}, ["groups"]),
    }, ["apiVersion", "kind", "metadata", "spec"]),
}
CORE_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")


def cmd_crds(rendered):
    import jsonschema

    docs = load_docs(rendered)
    checked = 0
    errors = []
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key in CRD_SCHEMAS:
            v = jsonschema.Draft7Validator(CRD_SCHEMAS[key])
            for e in v.iter_errors(d):
                path = ".".join(str(p) for p in e.absolute_path)
                errors.append(f"{key[1]}/{d['metadata'].get('name')}: {path}: {e.message}")
            checked += 1
        elif key[0] not in CORE_GROUPS:
            errors.append(f"no schema for {key[0]} {key[1]}")
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"{checked} Prometheus Operator object(s) valid")


def cmd_rules(rendered, out):
    docs = load_docs(rendered)
    rule = one(docs, "PrometheusRule")
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump({"groups": rule["spec"]["groups"]}, f, sort_keys=False)
    n = sum(len(g["rules"]) for g in rule["spec"]["groups"])
    print(f"{n} rules extracted to {out}")


# --------------------------------------------------------------------------- check-config

def _secret_data(docs):
    out = {}
    for s in by_kind(docs, "Secret"):
        data = {k: base64.b64decode(v).decode("utf-8") for k, v in (s.get("data") or {}).items()}
        data.update(s.get("stringData") or {})
        out[s["metadata"]["name"]] = data
    return out


def _configmap_data(docs):
    return {c["metadata"]["name"]: dict(c.get("data") or {}) for c in by_kind(docs, "ConfigMap")}


class Fixture:
    """Dummy material for Secrets the chart does not render (existingSecret)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.secrets = []          # values that must never be printed
        self._pem = None

    def secret(self, value):
        self.secrets.append(value)
        return value

    def pem(self):
        if self._pem is None:
            key = os.path.join(self.workdir, "ci-key.pem")
            cert = os.path.join(self.workdir, "ci-cert.pem")
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                 "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=qikchat-bridge-ci"],
                check=True, capture_output=True)
            with open(cert, encoding="ascii") as f:
                c = f.read()
            with open(key, encoding="ascii") as f:
                k = f.read()
            self._pem = (c, k)
        return self._pem

    def file_content(self, purpose, secret_name, key):
        """Content of a file the pod would get from a Secret outside the chart."""
        tag = re.sub(r"[^a-z0-9]+", "-", f"{secret_name}-{key}".lower())
        if purpose == "auth":
            return "# dummy credentials for CI\nqikchat:" + self.secret(f"ci-dummy-webhook-{tag}") + "\n"
        if purpose in ("cert", "ca"):
            return self.pem()[0]
        if purpose == "key":
            return self.pem()[1]
        if purpose == "username":
            return f"ci-dummy-{tag}"
        if re.search(r"\.(crt|pem)$", key) or key.startswith("ca"):
            return self.pem()[0]
        if key.endswith(".key"):
            return self.pem()[1]
        return self.secret(f"ci-dummy-{tag}")

    def value(self, env_name, secret_name, key):
        """Dummy value of a Secret's key given to env_name. It must not be printed when the bridge
        hides it: the variable sets a property its is_secret names, whatever the key is called
        (a Secret may hold sasl.oauthbearer.token.endpoint.url, which --check-config shows)."""
        prop = env_property(env_name)
        if prop and is_secret(prop):
            return self.secret(f"ci-dummy-{secret_name}-{key}")
        return f"ci-dummy-{key}"


FILE_PURPOSE = {
    "BRIDGE_AUTH_FILE": "auth",
    "KAFKA_SSL_CA_LOCATION": "ca",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "cert",
    "KAFKA_SSL_KEY_LOCATION": "key",
    # A user name is not a secret (--check-config shows it), even when it comes from one.
    "KAFKA_SASL_USERNAME_FILE": "username",
}


def _expand(value, env):
    """Kubernetes $(VAR) expansion ($$ escapes)."""
    def repl(m):
        if m.group(0).startswith("$$"):
            return m.group(0)[1:]
        name = m.group(1)
        return env[name] if name in env else m.group(0)
    return re.sub(r"\$\$\(|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, value)


def build_invocation(docs, workdir, fixture):
    deploy = workload(docs)
    pod = deploy["spec"]["template"]["spec"]
    c = bridge_container(deploy)
    namespace = deploy["metadata"].get("namespace", "default")
    secrets = _secret_data(docs)
    configmaps = _configmap_data(docs)
    root = os.path.join(workdir, "root")

    # Which env var points at which path decides what kind of dummy file to create.
    purpose_by_path = {}
    for e in (c.get("env") or []):
        if "value" in e and e["value"]:
            purpose = FILE_PURPOSE.get(e["name"]) or ("secret" if e["name"].endswith("_FILE") else None)
            if purpose:
                purpose_by_path[e["value"]] = purpose

    # Materialise the volume mounts under WORKDIR/root.
    volumes = {v["name"]: v for v in (pod.get("volumes") or [])}
    # A StatefulSet's claims (the spool) become empty, writable directories.
    for t in deploy["spec"].get("volumeClaimTemplates") or []:
        volumes.setdefault(t["metadata"]["name"], {"persistentVolumeClaim": {"claimName": t["metadata"]["name"]}})
    mount_paths = []
    for m in (c.get("volumeMounts") or []):
        vol = volumes.get(m["name"])
        if vol is None:
            fail(f"volumeMount {m['name']} has no volume")
        target = root + m["mountPath"]
        mount_paths.append(m["mountPath"])
        os.makedirs(target if not m.get("subPath") else os.path.dirname(target), exist_ok=True)
        sources = []
        if "secret" in vol:
            sources.append(("secret", vol["secret"]))
        elif "configMap" in vol:
            sources.append(("configMap", vol["configMap"]))
        elif "projected" in vol:
            for s in vol["projected"].get("sources", []):
                if "secret" in s:
                    sources.append(("secret", s["secret"]))
                elif "configMap" in s:
                    sources.append(("configMap", s["configMap"]))
        for kind, src in sources:
            name = src.get("secretName") or src.get("name")
            rendered = (secrets if kind == "secret" else configmaps).get(name)
            items = src.get("items")
            if items is None:
                if rendered is None:
                    print(f"  note: {kind} {name} is not rendered and has no items; its keys are unknown")
                    continue
                items = [{"key": k, "path": k} for k in rendered]
            for it in items:
                rel = it["path"]
                if m.get("subPath"):
                    if rel != m["subPath"]:
                        continue
                    dest = target
                else:
                    dest = os.path.join(target, rel)
                if rendered is not None:
                    if it["key"] not in rendered:
                        fail(f"{kind} {name} rendered by the chart has no key {it['key']}")
                    content = rendered[it["key"]]
                else:
                    purpose = purpose_by_path.get(m["mountPath"].rstrip("/") + "/" + rel, "")
                    content = fixture.file_content(purpose, name, it["key"])
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "w", encoding="utf-8") as f:
                    f.write(content)
    # Longest mount path first, so nested mounts are rewritten correctly.
    mount_paths.sort(key=len, reverse=True)

    def rewrite(value):
        for mp in mount_paths:
            mp_clean = mp.rstrip("/")
            value = re.sub(r"(^|(?<=[=,:\s]))" + re.escape(mp_clean) + r"(?=/|$)", root + mp_clean, value)
        return value

    env = {}
    pod_name = deploy["metadata"]["name"] + ("-0" if deploy["kind"] == "StatefulSet" else "-7d4b9c8f6-x2x9z")
    field_values = {"metadata.name": pod_name, "metadata.namespace": namespace, "status.podIP": "10.1.2.3",
                    "status.hostIP": "10.0.0.1", "spec.nodeName": "node-1",
                    "spec.serviceAccountName": pod.get("serviceAccountName", "default"), "metadata.uid": "00000000-0000-0000-0000-000000000001"}
    for src in (c.get("envFrom") or []):
        prefix = src.get("prefix", "")
        if "secretRef" in src:
            data = secrets.get(src["secretRef"]["name"])
        else:
            data = configmaps.get(src["configMapRef"]["name"])
        if data is None:
            print(f"  note: envFrom {src} is not rendered by the chart; skipped")
            continue
        for k, v in data.items():
            env[prefix + k] = v
    for e in (c.get("env") or []):
        name = e["name"]
        if "valueFrom" in e:
            vf = e["valueFrom"]
            if "secretKeyRef" in vf:
                ref = vf["secretKeyRef"]
                data = secrets.get(ref["name"])
                value = data[ref["key"]] if data is not None else fixture.value(name, ref["name"], ref["key"])
            elif "configMapKeyRef" in vf:
                ref = vf["configMapKeyRef"]
                data = configmaps.get(ref["name"])
                value = data[ref["key"]] if data is not None else f"ci-dummy-{ref['key']}"
            elif "fieldRef" in vf:
                value = field_values.get(vf["fieldRef"]["fieldPath"], "ci-dummy")
            elif "resourceFieldRef" in vf:
                value = "1"
            else:
                fail(f"unsupported valueFrom for {name}")
        else:
            value = _expand(e.get("value", ""), env)
        env[name] = rewrite(value)

    args = [rewrite(_expand(a, env)) for a in (c.get("args") or [])]
    if c.get("command"):
        fail("the chart sets `command`; the test assumes the image entrypoint (the binary) is used")
    return env, args


def run_binary(binary, args, env, timeout=60):
    cmd = ["env", "-i"] + [f"{k}={v}" for k, v in env.items()] + [binary] + args + ["--check-config"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def cmd_check_config(binary, rendered, workdir):
    docs = load_docs(rendered)
    fixture = Fixture(workdir)
    # Values of chart-rendered Secrets must not leak either.
    for data in _secret_data(docs).values():
        for k, v in data.items():
            for line in v.splitlines():
                if ":" in line and not line.startswith("#"):
                    fixture.secrets.append(line.split(":", 1)[1])
                elif line and "password" in k.lower():
                    fixture.secrets.append(line)
    env, args = build_invocation(docs, workdir, fixture)

    shown = " ".join(args)
    print(f"  $ env -i <{len(env)} variables> {os.path.basename(binary)} {shown} --check-config")
    for k in sorted(env):
        v = env[k]
        if any(s and s in v for s in fixture.secrets):
            v = "<secret>"
        print(f"      {k}={v}")
    r = run_binary(binary, args, env)
    output = (r.stdout or "") + (r.stderr or "")
    print("  --- output ---")
    for line in output.rstrip().splitlines():
        print("  | " + line)
    if r.returncode != 0:
        fail(f"--check-config exited {r.returncode}: the binary rejects the environment the chart renders")
    leaked = [s for s in fixture.secrets if len(s) >= 6 and s in output]
    if leaked:
        fail("--check-config printed secret values (the summary must be redacted)")

    # The check must be able to fail: break one setting at a time.
    broken = dict(env, BRIDGE_ACK_TIMEOUT="not-a-duration")
    r = run_binary(binary, args, broken)
    if r.returncode != 2:
        fail(f"--check-config with BRIDGE_ACK_TIMEOUT=not-a-duration exited {r.returncode}, expected 2")
    if "BRIDGE_AUTH_FILE" in env:
        broken = dict(env, BRIDGE_AUTH_FILE=os.path.join(workdir, "does-not-exist"))
        r = run_binary(binary, args, broken)
        if r.returncode != 2:
            fail(f"--check-config with a missing BRIDGE_AUTH_FILE exited {r.returncode}, expected 2 (files must be read)")
    if "KAFKA_SASL_PASSWORD_FILE" in env:
        broken = dict(env, KAFKA_SASL_PASSWORD_FILE=os.path.join(workdir, "does-not-exist"))
        r = run_binary(binary, args, broken)
        if r.returncode != 2:
            fail(f"--check-config with a missing KAFKA_SASL_PASSWORD_FILE exited {r.returncode}, expected 2")
    if env.get("BRIDGE_SPOOL_DIR"):
        spool = env["BRIDGE_SPOOL_DIR"]
        if not (spool.startswith(os.path.join(workdir, "")) and os.path.isdir(spool) and os.access(spool, os.W_OK)):
            fail(f"BRIDGE_SPOOL_DIR={spool} was not mapped to a writable directory under {workdir}")
        broken = dict(env, BRIDGE_SPOOL_MAX_BYTES="1")
        r = run_binary(binary, args, broken)
        if r.returncode != 2:
            fail(f"--check-config with BRIDGE_SPOOL_MAX_BYTES below the body limit exited {r.returncode}, expected 2")
    print("  accepted by the binary; broken settings are rejected with exit 2")


def _yaml_escape(text):
    """The inside of a YAML double-quoted scalar for any text: printable ASCII as it is, every
    other character as a \\u or \\U escape (YAML allows neither raw control characters nor, in
    escapes, JSON's surrogate pairs)."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7f:
            out.append(ch)
        elif o <= 0xFFFF:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    return "".join(out)


def _template_with(values, chart, release, namespace):
    """helm template of the chart with a bootstrap server and the values file `values`."""
    return subprocess.run(["helm", "template", release, chart, "--namespace", namespace,
                           "--set", "kafka.bootstrapServers=kafka:9092", "-f", values],
                          capture_output=True, text=True)


def _agreement(what, names, results):
    """Fails listing each of `names` whose (chart accepts, binary accepts) in `results` differ;
    else says how many agree."""
    disagree = [f"{name!r}: the chart {'accepts' if c else 'refuses'} it, the binary "
                f"{'accepts' if b else 'refuses'} it" for name, (c, b) in zip(names, results) if c != b]
    if disagree:
        fail("\n".join("  - " + d for d in disagree))
    print(f"chart and binary agree on {len(names)} {what} ({sum(b for _, b in results)} accepted)")


def cmd_webhook_paths(binary, rendered, workdir, chart, release, namespace):
    """The chart accepts exactly the webhook paths the binary accepts."""
    docs = load_docs(rendered)
    env, args = build_invocation(docs, workdir, Fixture(workdir))
    if "BRIDGE_WEBHOOK_PATH" not in env:
        fail(f"{rendered} sets no BRIDGE_WEBHOOK_PATH")
    # NUL cannot be in an environment variable; every other ASCII character between two letters,
    # a few non-ASCII ones (Latin-1, a no-break space, a line separator, outside the BMP), and
    # paths that are empty, relative or the root.
    paths = ["", "webhook", "/", "//", "/webhook", " /webhook", "/webhook/"]
    paths += [f"/a{chr(c)}b" for c in range(1, 128)]
    paths += ["/w\u00e9bhook", "/a\u00a0b", "/a\u2028b", "/a\U0001F600b", "/a\x80b"]
    # The longest the bridge takes (a request's whole head must fit in 16 KiB), and one more.
    paths += ["/" + "a" * 4095, "/" + "a" * 4096]
    values = os.path.join(workdir, "webhook-path-values.yaml")
    results = []
    for path in paths:
        with open(values, "w", encoding="ascii") as f:
            f.write(f'config:\n  webhookPath: "{_yaml_escape(path)}"\n')
        r = _template_with(values, chart, release, namespace)
        chart_ok = r.returncode == 0
        if not chart_ok and "webhookPath" not in r.stderr:
            fail(f"helm template with webhookPath {path!r} failed for another reason: {r.stderr[:300]}")
        b = run_binary(binary, args, dict(env, BRIDGE_WEBHOOK_PATH=path))
        out = (b.stdout or "") + (b.stderr or "")
        binary_ok = b.returncode == 0
        if not binary_ok and (b.returncode != 2 or "--webhook-path" not in out):
            fail(f"--check-config with BRIDGE_WEBHOOK_PATH={path!r} exited {b.returncode} for another "
                 f"reason: {out[-300:]}")
        results.append((chart_ok, binary_ok))
    _agreement("webhook paths", paths, results)


# Rust's char::is_whitespace (the White_Space property), which str::trim removes: the bridge's
# trim of an event name (src/topics.rs) and of a credentials file's lines (src/auth.rs).
RUST_WHITESPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B))
                   + "\u2028\u2029\u202f\u205f\u3000")
# Look-alikes that are no White_Space (str::trim keeps them): zero-width space and no-break,
# byte-order mark, the Mongolian vowel separator (White_Space before Unicode 6.3).
NOT_WHITESPACE = "\u200b\u2060\ufeff\u180e"


def cmd_topic_events(binary, rendered, workdir, chart, release, namespace):
    """The chart accepts exactly the config.topics keys (event names) the binary accepts."""
    import concurrent.futures
    docs = load_docs(rendered)
    env, args = build_invocation(docs, workdir, Fixture(workdir))
    topic = "whatsapp.other"
    events = ["", "a", "whatsapp:message:reaction", "a b", ",", "=", ",a", "a,", "=a", "a="]
    events += [f"a{chr(c)}b" for c in range(1, 128)]
    for ch in RUST_WHITESPACE + NOT_WHITESPACE + "é\U0001F600":
        events += [f"{ch}a", f"a{ch}", f"a{ch}b"]
    events = list(dict.fromkeys(events))

    def one_event(n_event):
        """(chart accepts, binary accepts) for one event name; a CheckError for anything else."""
        n, event = n_event
        values = os.path.join(workdir, f"topic-event-values.{n}.yaml")
        with open(values, "w", encoding="ascii") as f:
            f.write(f'config:\n  topics:\n    "{_yaml_escape(event)}": {topic}\n')
        r = _template_with(values, chart, release, namespace)
        chart_ok = r.returncode == 0
        if chart_ok:
            got = [e.get("value") for d in yaml.safe_load_all(r.stdout) if d and d["kind"] == "Deployment"
                   for e in d["spec"]["template"]["spec"]["containers"][0]["env"] if e["name"] == "BRIDGE_TOPICS"]
            if len(got) != 1:
                fail(f"config.topics key {event!r} rendered BRIDGE_TOPICS {len(got)} times")
            topics = got[0]
        else:
            if "config.topics." not in r.stderr:
                fail(f"helm template with config.topics key {event!r} failed for another reason: {r.stderr[:300]}")
            topics = f"{event}={topic}"
        b = run_binary(binary, args, dict(env, BRIDGE_TOPICS=topics))
        out = (b.stdout or "") + (b.stderr or "")
        if b.returncode != 0 and (b.returncode != 2 or "--topic" not in out):
            fail(f"--check-config with BRIDGE_TOPICS={topics!r} exited {b.returncode} for another reason: {out[-300:]}")
        # An accepted key reaches the bridge as written: one entry EVENT=TOPIC of the list.
        if chart_ok and b.returncode == 0 and f"{event}={topic}" not in topics.split(","):
            fail(f"config.topics key {event!r} rendered BRIDGE_TOPICS={topics!r}, without {event + '=' + topic!r}")
        return chart_ok, b.returncode == 0

    # One helm template and one --check-config per name (some 220): in parallel where there are
    # cores to spare.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one_event, enumerate(events)))
    _agreement("event names", events, results)


# --------------------------------------------------------------------------- compose / dashboard

def cmd_compose(path):
    with open(path, encoding="utf-8") as f:
        compose = yaml.safe_load(f)
    base = os.path.dirname(os.path.abspath(path))
    errors = []
    services = compose["services"]
    bridge = services.get("qikchat-bridge")
    if not bridge:
        fail("no qikchat-bridge service")
    env = bridge.get("environment") or {}
    if isinstance(env, list):
        env = dict(x.split("=", 1) for x in env)
    for name in env:
        if not name.startswith("KAFKA_") and name not in BRIDGE_ENV:
            errors.append(f"bridge env {name} is not part of the bridge's interface")
    if "KAFKA_BOOTSTRAP_SERVERS" not in env:
        errors.append("bridge must point at the stack's Kafka (KAFKA_BOOTSTRAP_SERVERS)")
    else:
        host = env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0]
        if host not in services:
            errors.append(f"KAFKA_BOOTSTRAP_SERVERS host {host} is not a service")
    if not bridge.get("read_only") or "ALL" not in (bridge.get("cap_drop") or []):
        errors.append("bridge must run read-only with all capabilities dropped")
    build = bridge.get("build") or {}
    if not os.path.isfile(os.path.join(base, build.get("context", "."), build.get("dockerfile", "Dockerfile"))):
        errors.append("bridge build context/dockerfile does not exist")
    if "BRIDGE_AUTH_FILE" in env:
        secret_names = {s if isinstance(s, str) else s["source"] for s in bridge.get("secrets", [])}
        for s in secret_names:
            src = compose["secrets"][s]["file"]
            if not os.path.isfile(os.path.join(base, src)):
                errors.append(f"secret file {src} missing")
    for sname, svc in services.items():
        if "apache/kafka" in str(svc.get("image", "")) and sname == "kafka":
            kenv = svc.get("environment") or {}
            if "broker" not in str(kenv.get("KAFKA_PROCESS_ROLES", "")) or "controller" not in str(kenv.get("KAFKA_PROCESS_ROLES", "")):
                errors.append("kafka must run in KRaft combined mode (broker,controller)")
        for vol in svc.get("volumes", []) or []:
            if isinstance(vol, str) and vol.startswith("."):
                src = vol.split(":", 1)[0]
                if not os.path.exists(os.path.join(base, src)):
                    errors.append(f"{sname}: volume source {src} missing")
    # Topics the bridge produces to must exist (created by an init service, or auto-created).
    topics = ["whatsapp.message.in", "whatsapp.message.status", "whatsapp.unrouted", "whatsapp.deadletter"]
    text = open(path, encoding="utf-8").read()
    auto = str((services.get("kafka", {}).get("environment") or {}).get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "true")).lower() == "true"
    if not auto:
        for t in topics:
            if t not in text:
                errors.append(f"topic {t} is neither auto-created nor created by an init service")
    # Prometheus scrapes the bridge's admin port.
    prom = os.path.join(base, "prometheus", "prometheus.yml")
    with open(prom, encoding="utf-8") as f:
        pcfg = yaml.safe_load(f)
    admin_port = port_of(env.get("BRIDGE_ADMIN_LISTEN", "0.0.0.0:9464"))
    targets = [t for sc in pcfg["scrape_configs"] for st in sc.get("static_configs", []) for t in st["targets"]]
    if f"qikchat-bridge:{admin_port}" not in targets:
        errors.append(f"prometheus.yml does not scrape qikchat-bridge:{admin_port}")
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print("compose stack consistent")


def _metric_names(expr):
    return set(re.findall(r"\b((?:qikchat_bridge|process)_[a-z0-9_]+)\b", expr))


def _known(name):
    if name in METRICS or name in PROCESS_METRICS:
        return True
    for h in HISTOGRAMS:
        if name in (h + "_bucket", h + "_sum", h + "_count"):
            return True
    return False


# Strangers' refusals, answered at once and as many as a scanner likes: a ratio or percentile of
# webhooks that counts them is diluted by them.
STRANGERS = ("unauthorized", "not_found", "method_not_allowed")
REQUEST_METRIC = r"qikchat_bridge_request(?:s_total|_duration_seconds_(?:bucket|count|sum))\b"


# The status each of them is answered with.
STRANGER_STATUS = {"unauthorized": "401", "not_found": "404", "method_not_allowed": "405"}


def _matchers(selector):
    """(label, operator, value) of each matcher of a selector `{...}`, in either quotes."""
    return [(label, op, dq or sq) for label, op, dq, sq in
            re.findall(r"""(\w+)\s*(=~|!~|!=|=)\s*(?:"([^"]*)"|'([^']*)')""", selector or "")]


def _admits(selector, stranger):
    """Whether a selector lets a stranger's answers through: by their outcome and status, the
    two labels that tell them (a regular expression matches whole, as in PromQL)."""
    values = {"outcome": stranger, "status": STRANGER_STATUS[stranger]}
    for label, op, pattern in _matchers(selector):
        if label not in values:
            continue
        hit = values[label] == pattern if op in ("=", "!=") else re.fullmatch(pattern, values[label]) is not None
        if hit != (op in ("=", "=~")):
            return False
    return True


def _strangers_left_out(exprs):
    """In every ratio and every answer-time percentile, no selector of the request metrics lets
    the strangers' answers through (by outcome or status), but those the expression picks by name
    (`outcome="unauthorized"`: the share of 401s among answers); a percentile per outcome
    (grouped by `le` and `outcome`) is no mix of them."""
    errors = []
    for where, expr in exprs:
        flat = " ".join(expr.split())
        if "/" not in flat and "histogram_quantile" not in flat:
            continue
        le_groups = [g for g in re.findall(r"\bby\s*\(([^)]*)\)", flat) if re.search(r"\ble\b", g)]
        if "/" not in flat and le_groups and all(re.search(r"\boutcome\b", g) for g in le_groups):
            continue
        named = {o for o in STRANGERS if re.search(r"""outcome\s*=\s*["']""" + o + r"""["']""", flat)}
        for m in re.finditer(REQUEST_METRIC + r"\s*(\{[^}]*\})?", flat):
            through = sorted(o for o in STRANGERS if o not in named and _admits(m.group(1), o))
            if through:
                errors.append(
                    f"{where}: {m.group(0)} counts strangers' refusals ({', '.join(through)}) "
                    f"in a ratio or percentile of webhooks: {flat!r}"
                )
    return errors


def cmd_dashboard(dashboard, *alerts):
    with open(dashboard, encoding="utf-8") as f:
        dash = json.load(f)
    errors = []
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            errors.append(f"dashboard has no {key}")
    ids = set()
    exprs = []
    for p in dash.get("panels", []):
        if p.get("id") in ids:
            errors.append(f"duplicate panel id {p.get('id')}")
        ids.add(p.get("id"))
        gp = p.get("gridPos") or {}
        if not all(k in gp for k in ("h", "w", "x", "y")) or gp.get("x", 0) + gp.get("w", 0) > 24:
            errors.append(f"panel {p.get('title')} has a bad gridPos")
        for t in p.get("targets", []):
            exprs.append((f"panel {p.get('title')!r}", t.get("expr", "")))
    var_names = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    for where, expr in exprs:
        for var in re.findall(r"\$(\w+)", expr):
            if var not in var_names and not var.startswith("__"):
                errors.append(f"{where} uses undefined variable ${var}")
    # Several releases (staging next to production) may share a job name: a namespace variable,
    # whose All (.*) also matches the compose stack's series without a namespace label, scopes
    # the job and instance variables and every selector of every panel, next to job and instance.
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ns = variables.get("namespace")
    ns_selector = 'namespace=~"$namespace"'
    if not ns:
        errors.append("no templated namespace variable")
    else:
        ns_query = (ns.get("query") or {}).get("query", "") if isinstance(ns.get("query"), dict) else ns.get("query", "")
        if ns.get("type") != "query" or not re.fullmatch(r"label_values\(\s*qikchat_bridge_\w+\s*,\s*namespace\s*\)", ns_query or ""):
            errors.append(f"the namespace variable does not list the bridge's namespaces: {ns_query!r}")
        if not ns.get("includeAll") or ns.get("allValue") != ".*":
            errors.append("the namespace variable needs All = .* (series without a namespace label, docker-compose)")
        names = [v["name"] for v in dash["templating"]["list"]]
        for dependent in ("job", "instance"):
            v = variables.get(dependent)
            q = ((v or {}).get("query") or {}).get("query", "") if isinstance((v or {}).get("query"), dict) else ""
            if not v or ns_selector not in q:
                errors.append(f"the {dependent} variable is not scoped by {ns_selector}: {q!r}")
            elif names.index(dependent) < names.index("namespace"):
                errors.append(f"the {dependent} variable comes before the namespace variable it depends on")
    for where, expr in exprs:
        if not where.startswith("panel "):
            continue
        for sel in re.findall(r"\b(?:qikchat_bridge|process)_[a-z0-9_]+\s*(\{[^}]*\})?", expr):
            if not all(x in sel for x in (ns_selector, 'job=~"$job"', 'instance=~"$instance"')):
                errors.append(f"{where}: selector {sel or '(none)'} lacks {ns_selector}, job or instance in {expr!r}")
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        if isinstance(q, dict):
            exprs.append((f"variable {v['name']}", q.get("query", "")))
    for path in alerts:
        with open(path, encoding="utf-8") as f:
            rules = yaml.safe_load(f)
        for g in rules["groups"]:
            for r in g["rules"]:
                exprs.append((f"rule {r.get('alert') or r.get('record')}", r["expr"]))
    errors.extend(_strangers_left_out(exprs))
    used = set()
    for where, expr in exprs:
        for name in _metric_names(expr):
            used.add(name)
            if not _known(name):
                errors.append(f"{where} uses {name}, which the bridge does not export")
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"dashboard and rules use {len(used)} known metric names")



# What debian:*-slim itself has of what a Rust binary links.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}


def runtime_stage_packages(text):
    """The packages the `AS runtime` stage installs with apt-get/apt install."""
    logical = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    stage, packages = None, set()
    for line in logical.splitlines():
        words = line.split()
        if words and words[0].upper() == "FROM":
            stage = words[3].lower() if len(words) >= 4 and words[2].upper() == "AS" else None
            continue
        if stage != "runtime":
            continue
        for m in re.finditer(r"\bapt(?:-get)?\s+(?:-\S+\s+)*install\s+([^&;|]*)", line):
            packages.update(w for w in m.group(1).split() if not w.startswith("-"))
    return packages


def owning_package(path):
    """The Debian package that holds a library file (merged /usr: either spelling)."""
    candidates = [path, os.path.realpath(path)]
    candidates += [c[4:] if c.startswith("/usr/") else "/usr" + c for c in list(candidates)]
    for c in candidates:
        r = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout:
            return r.stdout.split(":", 1)[0].strip()
    return None


def cmd_runtime_packages(binary, dockerfile):
    with open(dockerfile, encoding="utf-8") as f:
        installed = runtime_stage_packages(f.read())
    if not installed:
        fail(f"{dockerfile}: no `apt-get install` in a stage named `runtime`")
    dump = subprocess.run(["objdump", "-p", binary], capture_output=True, text=True, check=True).stdout
    needed = [l.split()[1] for l in dump.splitlines() if l.split()[:1] == ["NEEDED"]]
    if not needed:
        fail(f"no NEEDED entries in {binary}")
    resolved = {}
    for line in subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "=>":
            resolved[parts[0]] = parts[2]
    errors = []
    for lib in needed:
        if lib.startswith("ld-linux"):
            print(f"{lib}: libc6 (the dynamic loader)")
            continue
        path = resolved.get(lib, "")
        if not path.startswith("/"):
            errors.append(f"{lib}: not found by ldd ({path or 'no line'})")
            continue
        package = owning_package(path)
        if package is None:
            errors.append(f"{lib} ({path}): no Debian package holds it")
        elif package in installed or package in BASE_IMAGE_PACKAGES:
            print(f"{lib}: {package}")
        else:
            errors.append(f"{lib} comes from {package}, which the runtime stage does not install")
    if errors:
        fail("\n".join("  - " + e for e in errors) + f"\n  (the runtime stage installs: {' '.join(sorted(installed))})")

def cmd_dockerfile(dockerfile, values_file):
    with open(dockerfile, encoding="utf-8") as f:
        text = f.read()
    with open(values_file, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    # Join continuation lines, drop comments.
    logical = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if len(l.split(None, 1)) > 1 else "")
             for l in logical.splitlines() if l.strip()]
    errors = []
    stages = [a for i, a in instr if i == "FROM"]
    final = max(i for i, (k, _) in enumerate(instr) if k == "FROM")
    tail = instr[final:]
    if len(stages) < 2:
        errors.append("not a multi-stage build")
    if not any("rust:" in a for a in stages):
        errors.append("no rust build stage")
    if any(k == "HEALTHCHECK" for k, _ in instr):
        errors.append("HEALTHCHECK present (Kubernetes probes do the health checking)")
    if not re.search(r"cargo build[^\n]*--release[^\n]*--locked|cargo build[^\n]*--locked[^\n]*--release", logical):
        errors.append("the release build is not --locked")
    users = [a.strip() for k, a in tail if k == "USER"]
    if not users:
        errors.append("runtime stage sets no USER")
    else:
        uid, _, gid = users[-1].partition(":")
        if not uid.isdigit() or int(uid) == 0:
            errors.append(f"USER {users[-1]} must be a numeric non-root UID")
        elif int(uid) != values["podSecurityContext"]["runAsUser"]:
            errors.append(f"USER {uid} differs from the chart's podSecurityContext.runAsUser")
        if gid and gid.isdigit() and int(gid) != values["podSecurityContext"]["runAsGroup"]:
            errors.append(f"USER group {gid} differs from the chart's podSecurityContext.runAsGroup")
    exposed = {int(p.split("/")[0]) for k, a in tail if k == "EXPOSE" for p in a.split()}
    want = {values["containerPorts"]["http"], values["containerPorts"]["admin"]}
    if exposed != want:
        errors.append(f"EXPOSE {sorted(exposed)} differs from the chart's container ports {sorted(want)}")
    if want != {8080, 9464}:
        errors.append("the chart's default container ports differ from the binary's defaults (8080, 9464)")
    eps = [a for k, a in tail if k == "ENTRYPOINT"]
    if not eps or json.loads(eps[-1]) != ["/usr/local/bin/qikchat-bridge"]:
        errors.append("ENTRYPOINT must be [\"/usr/local/bin/qikchat-bridge\"] (the chart passes args only)")
    if any(k == "CMD" for k, _ in tail):
        errors.append("CMD in the runtime stage would be appended to the chart's args")
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print("Dockerfile consistent with the chart")


FREE_FORM = {"kafka.properties", "config.topics", "grafanaDashboard.labels", "resources"}


def _leaf_paths(node, prefix=""):
    for k, v in node.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v and path not in FREE_FORM:
            yield from _leaf_paths(v, path + ".")
        else:
            yield path


def cmd_readme(values_file, readme):
    with open(values_file, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    documented = set(re.findall(r"^\|\s*`([^`]+)`\s*\|", text, re.M))
    paths = list(_leaf_paths(values))
    missing = [p for p in paths if p not in documented]
    unknown = [p for p in documented if p not in paths and not any(p.startswith(x + ".") for x in paths)]
    errors = [f"value {p} is not in the README's values table" for p in missing]
    errors += [f"README documents {p}, which values.yaml does not have" for p in unknown]
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"all {len(paths)} values documented")


def _alternatives(pattern, where):
    """The literal names of a `(a|b\\.c|...)` pattern, unescaped."""
    m = re.fullmatch(r"\((.*)\)", pattern.strip())
    if not m:
        fail(f"{where}: expected an unanchored (a|b|...) pattern, found {pattern!r}")
    parts = m.group(1).split("|")
    for p in parts:
        if re.search(r"[\^$*+?()\[\]{}]|\\[^.]|(?<!\\)\.", p):
            fail(f"{where}: {p!r} is not a literal name (only \\. may be escaped)")
    return {p.replace("\\.", ".") for p in parts}


def cmd_secret_names(redact_rs, schema_file, helpers, *prose):
    with open(redact_rs, encoding="utf-8") as f:
        rust = f.read()
    m = re.search(r"pub fn is_secret\(key: &str\) -> bool \{\s*\[(.*?)\]\s*\.iter\(\)\s*\.any\(\|s\| key\.contains\(s\)\)", rust, re.S)
    if not m:
        fail(f"{redact_rs}: is_secret is no longer `[\"...\", ...].iter().any(|s| key.contains(s))`; "
             "update this check and the chart's secret patterns together with it")
    truth = set(re.findall(r'"([^"]*)"', m.group(1)))
    with open(schema_file, encoding="utf-8") as f:
        schema = json.load(f)
    # The refused names are patternProperties whose schema is `not: {}` (so Helm names the key):
    # the anchored one is the chart-managed names, the unanchored one the secret names.
    refused = schema["properties"]["kafka"]["properties"]["properties"].get("patternProperties") or {}
    found = [pattern for pattern, sub in refused.items()
             if sub.get("not") == {} and not pattern.startswith("^")]
    if len(found) != 1:
        fail(f"{schema_file}: expected one unanchored patternProperties pattern of secret names refused "
             f"with `not: {{}}` in kafka.properties, found {found}")
    with open(helpers, encoding="utf-8") as f:
        tpl = f.read()
    m = re.search(r'define "qikchat-bridge\.secretPropertyPattern" -\}\}\n(.*?)\n\{\{- end', tpl, re.S)
    if not m:
        fail(f"{helpers}: no qikchat-bridge.secretPropertyPattern")
    errors = []
    for where, got in ((f"{schema_file} kafka.properties", _alternatives(found[0], schema_file)),
                       (f"{helpers} secretPropertyPattern", _alternatives(m.group(1), helpers)),
                       ("chart_check.py SECRET_PARTS", set(SECRET_PARTS))):
        if got != truth:
            errors.append(f"{where} differs from is_secret: missing {sorted(truth - got)}, extra {sorted(got - truth)}")
    # The lists written out for people (READMEs, comments, refusal messages) end with ssl_key:
    # each must name every part before it.
    for path in (schema_file, helpers) + prose:
        with open(path, encoding="utf-8") as f:
            text = f.read().replace("\\", "")
        for m in re.finditer(r"ssl_key", text):
            window = text[max(0, m.start() - 400):m.start()]
            missing = sorted(p for p in truth - {"ssl_key"} if p not in window)
            if missing:
                line = text.count("\n", 0, m.start()) + 1
                errors.append(f"{path}:{line}: its list of secret name parts lacks {missing}")
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"{len(truth)} secret name parts agree with is_secret: {', '.join(sorted(truth))}")


def _rust_const(rust, name, where):
    """The text between the brackets of `const NAME: [...; N] = [ ... ];` and its N."""
    m = re.search(rf"const {name}: \[[^;\]]*; (\d+)\] = \[(.*?)\];", rust, re.S)
    if not m:
        fail(f"{where}: no `const {name}: [...; N] = [...];`; update this check and the chart's "
             "helpers together with it")
    return m.group(2), int(m.group(1))


def _tpl_define(tpl, name, where):
    m = re.search(rf'define "qikchat-bridge\.{re.escape(name)}" -\}}\}}\n(.*?)\n\{{\{{- end', tpl, re.S)
    if not m:
        fail(f"{where}: no qikchat-bridge.{name}")
    return yaml.safe_load(m.group(1))


def cmd_property_aliases(names_rs, helpers):
    """The chart's propertyAliases and topicLevelProperties (what its canonicalProperty folds,
    for extraArgs' and extraEnv's refusals) are the bridge's ALIASES and TOPIC_LEVEL, and the
    bridge's canonical still folds them the way the chart does."""
    with open(names_rs, encoding="utf-8") as f:
        rust = f.read()
    body, n = _rust_const(rust, "ALIASES", names_rs)
    aliases = dict(re.findall(r'\(\s*"([^"]+)",\s*"([^"]+)",?\s*\)', body))
    if len(aliases) != n:
        fail(f"{names_rs}: ALIASES holds {n} pairs, this check read {len(aliases)}: {aliases}")
    body, n = _rust_const(rust, "TOPIC_LEVEL", names_rs)
    topic_level = re.findall(r'"([^"]+)"', body)
    if len(topic_level) != n:
        fail(f"{names_rs}: TOPIC_LEVEL holds {n} names, this check read {len(topic_level)}: {topic_level}")
    # canonicalProperty in _helpers.tpl replicates this body; another rule needs both changed.
    if not re.search(r'pub fn canonical\(key: &str\) -> &str \{\s*match key\.strip_prefix\("topic\."\)\.map\(unaliased\) \{\s*'
                     r'Some\(name\) if TOPIC_LEVEL\.contains\(&name\) => name,\s*_ => unaliased\(key\),\s*\}\s*\}', rust):
        fail(f"{names_rs}: canonical is no longer `topic.` + TOPIC_LEVEL after unaliased, else unaliased; "
             "update the chart's qikchat-bridge.canonicalProperty and this check together with it")
    with open(helpers, encoding="utf-8") as f:
        tpl = f.read()
    chart_aliases = _tpl_define(tpl, "propertyAliases", helpers) or {}
    chart_topic_level = _tpl_define(tpl, "topicLevelProperties", helpers) or []
    errors = []
    if chart_aliases != aliases:
        errors.append(f"{helpers} propertyAliases differs from ALIASES: missing "
                      f"{sorted(set(aliases.items()) - set(chart_aliases.items()))}, extra "
                      f"{sorted(set(chart_aliases.items()) - set(aliases.items()))}")
    if sorted(chart_topic_level) != sorted(topic_level):
        errors.append(f"{helpers} topicLevelProperties differs from TOPIC_LEVEL: missing "
                      f"{sorted(set(topic_level) - set(chart_topic_level))}, extra "
                      f"{sorted(set(chart_topic_level) - set(topic_level))}")
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"{len(aliases)} aliases and {len(topic_level)} topic-level properties agree with the bridge's "
          f"ALIASES and TOPIC_LEVEL")


def help_flag_variables(help_file):
    """{flag: env} of every long option of the binary's --help with an [env: NAME] (without the
    leading --); a help text without any is an error."""
    with open(help_file, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    pairs, flag = {}, None
    for line in lines:
        # An option's first line, `      --listen <LISTEN>` or `  -X, --kafka-property <...>`; its
        # description is indented further.
        m = re.match(r"^ {2,6}(?:-[A-Za-z], )?--([a-z0-9][a-z0-9-]*)", line)
        if m:
            flag = m.group(1)
            continue
        m = re.search(r"\[env:\s*([A-Z][A-Z0-9_]*)", line)
        if m and flag:
            pairs[flag] = m.group(1)
    if not pairs:
        fail(f"{help_file}: the binary's --help names no option with an [env: ...] variable "
             "(is it the bridge's --help?)")
    return pairs


def cmd_flag_variables(help_file, helpers):
    """Every flag of the binary whose variable is not BRIDGE_<FLAG> is in the chart's
    flagVariables (with that variable), and that table names no other: extraArgs' refusal of a
    flag the chart sets looks its variable up there, else takes BRIDGE_<FLAG>, and a flag missing
    there (--topic reads BRIDGE_TOPICS) would slip through."""
    pairs = help_flag_variables(help_file)
    expected = {flag: env for flag, env in pairs.items()
                if env != "BRIDGE_" + flag.replace("-", "_").upper()}
    with open(helpers, encoding="utf-8") as f:
        table = _tpl_define(f.read(), "flagVariables", helpers) or {}
    errors = [f"--{flag} reads {env}, not BRIDGE_{flag.replace('-', '_').upper()}, but flagVariables "
              f"{'maps it to ' + str(table[flag]) if flag in table else 'lacks it'}"
              for flag, env in sorted(expected.items()) if table.get(flag) != env]
    errors += [f"flagVariables has --{flag}: {env}, which the binary's --help does not give "
               f"({'it reads ' + pairs[flag] if flag in pairs else 'no such flag with a variable'})"
               for flag, env in sorted(table.items()) if flag not in expected]
    if errors:
        fail("\n".join("  - " + e for e in errors))
    print(f"{len(pairs)} flags with a variable in --help; those not read from BRIDGE_<FLAG> are in "
          f"flagVariables: {', '.join(f'--{f} {e}' for f, e in sorted(expected.items()))}")


def cmd_env_sources(pod_tpl, helpers):
    with open(pod_tpl, encoding="utf-8") as f:
        pod = f.read()
    m = re.search(r"\n      env:\n(.*?)\{\{- with \.Values\.extraEnv \}\}", pod, re.S)
    if not m:
        fail(f"{pod_tpl}: no env: block ending in extraEnv")
    set_here = set(re.findall(r"- name: ([A-Z][A-Z0-9_]*)", m.group(1)))
    with open(helpers, encoding="utf-8") as f:
        tpl = f.read()
    m = re.search(r'define "qikchat-bridge\.envSources" -\}\}\n(.*?)\n\{\{- end', tpl, re.S)
    if not m:
        fail(f"{helpers}: no qikchat-bridge.envSources")
    sources = set(yaml.safe_load(m.group(1)))
    if set_here != sources:
        fail(f"envSources differs from the variables {pod_tpl} sets: missing "
             f"{sorted(set_here - sources)}, extra {sorted(sources - set_here)}")
    print(f"{len(sources)} variables the chart sets, each with its values named")


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    cmd, rest = argv[1], argv[2:]
    try:
        if cmd == "static":
            help_file = None
            if "--help-text" in rest:
                i = rest.index("--help-text")
                help_file = rest[i + 1]
                rest = rest[:i] + rest[i + 2:]
            cmd_static(rest[0], help_file)
        elif cmd == "crds":
            cmd_crds(rest[0])
        elif cmd == "rules":
            cmd_rules(rest[0], rest[1])
        elif cmd == "check-config":
            cmd_check_config(*rest)
        elif cmd == "compose":
            cmd_compose(rest[0])
        elif cmd == "dashboard":
            cmd_dashboard(*rest)
        elif cmd == "dockerfile":
            cmd_dockerfile(*rest)
        elif cmd == "runtime-packages":
            cmd_runtime_packages(*rest)
        elif cmd == "readme":
            cmd_readme(*rest)
        elif cmd == "secret-names":
            cmd_secret_names(*rest)
        elif cmd == "env-sources":
            cmd_env_sources(*rest)
        elif cmd == "property-aliases":
            cmd_property_aliases(*rest)
        elif cmd == "flag-variables":
            cmd_flag_variables(*rest)
        elif cmd == "webhook-paths":
            cmd_webhook_paths(*rest)
        elif cmd == "topic-events":
            cmd_topic_events(*rest)
        else:
            print(__doc__)
            return 2
    except CheckError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
