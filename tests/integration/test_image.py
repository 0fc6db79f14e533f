"""`make image`: the OCI archive builds without a registry, loads into an empty image store and
runs (scripts/build-image.sh checks that), and it is the image deploy/ references."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _version() -> str:
    match = re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M)
    assert match
    return match.group(1)


def _deploy_images() -> set[str]:
    images = set()
    for name in ("agent.yaml", "operator.yaml"):
        for doc in yaml.safe_load_all((REPO / "deploy" / "base" / name).read_text()):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                images.add(container["image"])
    return images


def test_make_image_writes_the_oci_archive_deploy_uses() -> None:
    version = _version()
    proc = subprocess.run(
        ["make", "image", f"VENV={sys.prefix}"], cwd=REPO, capture_output=True, text=True, timeout=1200, check=False
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"wrote dist/tandem-{version}.oci.tar" in proc.stdout
    archive = REPO / "dist" / f"tandem-{version}.oci.tar"
    with tarfile.open(archive) as tar:
        layout = json.load(tar.extractfile("oci-layout"))  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert layout["imageLayoutVersion"] == "1.0.0"
    refs = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
    assert refs == {f"localhost/tandem:{version}"}
    assert _deploy_images() == refs, "deploy/ must run exactly the image make image builds"
    site = "opt/tandem/lib/python3.11/site-packages/"
    shipped = _image_files(archive, site)
    assert {"tandem", "tandem_agent", "tandem_operator"} <= shipped
    assert "tandem_lab" not in shipped, "the development package tandem-lab is never in the image"


def _image_files(archive: Path, prefix: str) -> set[str]:
    """The first path component below `prefix` of every file in the image's layers."""
    found = set()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if not member.name.startswith("blobs/") or not member.isfile():
                continue
            blob = tar.extractfile(member)
            assert blob is not None
            try:
                with tarfile.open(fileobj=blob) as layer:
                    names = layer.getnames()
            except tarfile.ReadError:  # the config and manifests: JSON
                continue
            found |= {n.removeprefix(prefix).split("/", 1)[0] for n in names if n.startswith(prefix)}
    return found
