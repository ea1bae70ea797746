"""Build the simulator's images with no container registry.

The base is Debian bookworm made by debootstrap and brought in with `docker import`; every other
image builds FROM it. Each image carries a hash of its build inputs in a label, so a build is
skipped while its inputs are unchanged and redone as soon as one of them changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors

from . import ARCHIVE_DIR, CACHE_DIR, LABEL, LABEL_INPUTS, SIM_DIR

VERSION = "0.1.0"
SUITE = "bookworm"
# What a Thor unit needs from its OS for this collection: systemd, a Docker engine (Jetson units
# run Docker's own packages; Debian's docker.io is the offline equivalent), python3 with requests
# for community.docker's modules, rsync for the model cache, iproute2 for tc, and busybox-static
# to make the few-megabyte probe image from.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "docker.io",
    "rsync",
    "python3",
    "python3-requests",
    "iproute2",
    "iptables",
    "ca-certificates",
    "procps",
    "busybox-static",
)


@dataclass(frozen=True)
class Image:
    """One simulator image: its reference, build context and whether units get it as an archive."""

    name: str
    context: Path | None = None
    archive: bool = False
    needs_base: bool = True
    extra_inputs: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ref(self) -> str:
        return f"thorfleet-sim/{self.name}:{VERSION}"

    @property
    def archive_path(self) -> Path:
        return ARCHIVE_DIR / f"{self.name}.tar"


BASE = Image("base", needs_base=False, extra_inputs=(SUITE, "minbase", *PACKAGES))
UNIT = Image("unit", context=SIM_DIR / "images" / "unit")
PROBE = Image("probe", context=SIM_DIR / "images" / "probe", archive=True)
IMAGES = (BASE, UNIT, PROBE)


def inputs_hash(image: Image, base_hash: str = "") -> str:
    """Hash of everything an image is built from: files with their modes, and extra inputs."""
    digest = hashlib.sha256()
    for item in (VERSION, base_hash, *image.extra_inputs):
        digest.update(item.encode() + b"\0")
    if image.context is not None:
        for path in sorted(image.context.rglob("*")):
            if path.is_file():
                rel = path.relative_to(image.context).as_posix()
                digest.update(f"{rel}\0{path.stat().st_mode & 0o777:o}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def built_hash(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).labels.get(LABEL_INPUTS)
    except docker.errors.ImageNotFound:
        return None


def log(message: str) -> None:
    print(f"fleet: {message}", file=sys.stderr, flush=True)


def debootstrap_import(client: docker.DockerClient, ref: str, labels: dict[str, str]) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit(
            "fleet build: debootstrap is not installed; run `make setup` "
            "(on Debian or Ubuntu as root it installs it) or `apt-get install debootstrap`."
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        # The mirror is debootstrap's default or DEBOOTSTRAP_MIRROR, as the host's admin set it.
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs)]
        if os.environ.get("DEBOOTSTRAP_MIRROR"):
            cmd.append(os.environ["DEBOOTSTRAP_MIRROR"])
        with open(Path(tmp) / "debootstrap.log", "w", encoding="utf-8") as out:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            tail = (Path(tmp) / "debootstrap.log").read_text(encoding="utf-8").splitlines()[-15:]
            raise SystemExit("fleet build: debootstrap failed:\n" + "\n".join(tail))
        # Package caches are build debris: they would only make every unit larger.
        for debris in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / debris).glob("*"):
                if path.is_file():
                    path.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "--xattrs", "-cf", str(tarball), "."], check=True)
        changes = [f"LABEL {key}={value}" for key, value in labels.items()]
        repository, tag = ref.rsplit(":", 1)
        client.api.import_image(src=str(tarball), repository=repository, tag=tag, changes=changes)


def export_archive(client: docker.DockerClient, image: Image) -> None:
    """Save an image as the tarball that container_images copies to air-gapped units."""
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    partial = image.archive_path.with_suffix(".tar.partial")
    with open(partial, "wb") as out:
        for chunk in client.images.get(image.ref).save(named=True):
            out.write(chunk)
    partial.replace(image.archive_path)


def build(client: docker.DockerClient, force: bool = False) -> dict[str, str]:
    """Build every image whose inputs changed; return {name: 'built'|'cached'}."""
    results: dict[str, str] = {}
    base_hash = inputs_hash(BASE)
    for image in IMAGES:
        wanted = base_hash if image is BASE else inputs_hash(image, base_hash)
        labels = {LABEL: "1", LABEL_INPUTS: wanted}
        if not force and built_hash(client, image.ref) == wanted:
            results[image.name] = "cached"
        else:
            started = time.monotonic()
            log(f"building {image.ref}")
            if image is BASE:
                debootstrap_import(client, image.ref, labels)
            else:
                _docker_build(client, image, labels)
            log(f"built {image.ref} in {time.monotonic() - started:.1f}s")
            results[image.name] = "built"
        if image.archive and (results[image.name] == "built" or not image.archive_path.exists()):
            export_archive(client, image)
    # Tags moved by rebuilds leave the old images dangling; they are ours to remove.
    client.images.prune(filters={"dangling": True, "label": LABEL})
    return results


def _docker_build(client: docker.DockerClient, image: Image, labels: dict[str, str]) -> None:
    try:
        client.images.build(
            path=str(image.context),
            tag=image.ref,
            buildargs={"BASE": BASE.ref},
            labels=labels,
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        lines = [str(entry.get("stream", entry.get("error", ""))).rstrip() for entry in exc.build_log]
        raise SystemExit(f"fleet build: {image.ref} failed: {exc}\n" + "\n".join(filter(None, lines[-15:]))) from None


def describe(client: docker.DockerClient) -> list[dict[str, str]]:
    """Each image's reference and whether it is missing, current or stale."""
    base_hash = inputs_hash(BASE)
    rows = []
    for image in IMAGES:
        wanted = base_hash if image is BASE else inputs_hash(image, base_hash)
        have = built_hash(client, image.ref)
        state = "missing" if have is None else ("current" if have == wanted else "stale")
        rows.append({"image": image.ref, "state": state, "archive": str(image.archive_path) if image.archive else ""})
    return rows


def require_current(client: docker.DockerClient, image: Image) -> None:
    for row in describe(client):
        if row["image"] == image.ref and row["state"] != "current":
            raise SystemExit(f"fleet: image {image.ref} is {row['state']}; run `sim/fleet build` (or `make setup`).")
