"""Build the simulator's images with no container registry.

Root images are Debian bookworm made by debootstrap and brought in with `docker import`; every
other image builds FROM one of them. Each image carries a hash of its build inputs in a label, so
a build is skipped while its inputs are unchanged and redone as soon as one of them changes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from . import ARCHIVE_DIR, CACHE_DIR, LABEL, LABEL_INPUTS, SIM_DIR

VERSION = "0.1.0"
SUITE = "bookworm"
IMAGES_DIR = SIM_DIR / "images"
# Left out of root images: they only make every archive that a unit receives larger.
DEBRIS = (
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
# ... and images built FROM a root image should bring back neither documentation nor .debs.
ROOT_FILES = {
    "etc/dpkg/dpkg.cfg.d/01-thorsim-nodoc": "".join(f"path-exclude=/{d}/*\n" for d in DEBRIS[2:]),
    "etc/apt/apt.conf.d/01-thorsim-nocache": (
        'Binary::apt::APT::Keep-Downloaded-Packages "false";\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
}


@dataclass(frozen=True)
class Image:
    """A simulator image: debootstrapped from `packages` (a root image), or built from `context` FROM `base`."""

    name: str
    packages: tuple[str, ...] = ()
    base: Image | None = None
    archive: bool = False  # units receive it as an archive, as air-gapped Thor units do

    @property
    def ref(self) -> str:
        return f"thorfleet-sim/{self.name}:{VERSION}"

    @property
    def context(self) -> Path | None:
        return None if self.base is None else IMAGES_DIR / self.name

    @property
    def archive_path(self) -> Path:
        return ARCHIVE_DIR / f"{self.name}.tar.gz"


# What a Thor unit needs from its OS for this collection: systemd, a Docker engine (Jetson units
# run Docker's packages; Debian's docker.io is the offline equivalent), python3 with requests for
# community.docker's modules, rsync for the model cache, iproute2 for tc, and busybox-static to
# make the few-megabyte probe image from.
BASE = Image(
    "base",
    packages=(
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
    ),
)
# The service stand-ins' base: small, because every unit receives each of them as an archive.
RUNTIME = Image("runtime", packages=("python3", "python3-yaml", "python3-psycopg2", "ca-certificates"))
UNIT = Image("unit", base=BASE)
PROBE = Image("probe", base=BASE, archive=True)
POSTGRES = Image("postgres", base=RUNTIME, archive=True)
VLLM = Image("vllm-sim", base=RUNTIME, archive=True)
LITELLM = Image("litellm-sim", base=RUNTIME, archive=True)
IMAGES = (BASE, RUNTIME, UNIT, PROBE, POSTGRES, VLLM, LITELLM)


def inputs_hash(image: Image) -> str:
    """Hash of everything an image is built from: its base's hash, packages, files and their modes."""
    digest = hashlib.sha256()
    if image.base is None:
        recipe = (SUITE, *image.packages, *DEBRIS, *(f"{k}\0{v}" for k, v in sorted(ROOT_FILES.items())))
    else:
        recipe = (inputs_hash(image.base),)
    for item in (VERSION, *recipe):
        digest.update(item.encode() + b"\0")
    if image.context is not None:
        for path in sorted(image.context.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
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


def debootstrap_import(client: docker.DockerClient, image: Image, labels: dict[str, str]) -> None:
    if shutil.which("debootstrap") is None:
        raise SystemExit(
            "fleet build: debootstrap is not installed; run `make setup` "
            "(on Debian or Ubuntu as root it installs it) or `apt-get install debootstrap`."
        )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        # The mirror is debootstrap's default, or DEBOOTSTRAP_MIRROR as the host's admin sets it.
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(image.packages)}", SUITE, str(rootfs)]
        if os.environ.get("DEBOOTSTRAP_MIRROR"):
            cmd.append(os.environ["DEBOOTSTRAP_MIRROR"])
        log_path = Path(tmp) / "debootstrap.log"
        with open(log_path, "w", encoding="utf-8") as out:
            result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            tail = log_path.read_text(encoding="utf-8").splitlines()[-15:]
            raise SystemExit("fleet build: debootstrap failed:\n" + "\n".join(tail))
        for debris in DEBRIS:
            shutil.rmtree(rootfs / debris, ignore_errors=True)
            (rootfs / debris).mkdir(parents=True)
        for path, content in ROOT_FILES.items():
            (rootfs / path).write_text(content, encoding="utf-8")
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "--xattrs", "-cf", str(tarball), "."], check=True)
        changes = [f"LABEL {key}={value}" for key, value in labels.items()]
        repository, tag = image.ref.rsplit(":", 1)
        client.api.import_image(src=str(tarball), repository=repository, tag=tag, changes=changes)


def docker_build(client: docker.DockerClient, image: Image, labels: dict[str, str]) -> None:
    try:
        client.images.build(
            path=str(image.context),
            tag=image.ref,
            buildargs={"BASE": image.base.ref},
            labels=labels,
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        lines = [str(entry.get("stream", entry.get("error", ""))).rstrip() for entry in exc.build_log]
        raise SystemExit(f"fleet build: {image.ref} failed: {exc}\n" + "\n".join(filter(None, lines[-15:]))) from None


def export_archive(client: docker.DockerClient, image: Image) -> None:
    """Save an image as the compressed tarball that container_images copies to air-gapped units."""
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    partial = image.archive_path.with_name(image.archive_path.name + ".partial")
    # Level 1: most of the size win at a fraction of the time; `docker load` reads gzip as it is.
    with gzip.open(partial, "wb", compresslevel=1) as out:
        for chunk in client.images.get(image.ref).save(named=True):
            out.write(chunk)
    partial.replace(image.archive_path)


def build(client: docker.DockerClient, force: bool = False) -> dict[str, str]:
    """Build every image whose inputs changed; return {name: 'built'|'cached'}."""
    results: dict[str, str] = {}
    for image in IMAGES:
        wanted = inputs_hash(image)
        if not force and built_hash(client, image.ref) == wanted:
            results[image.name] = "cached"
        else:
            started = time.monotonic()
            log(f"building {image.ref}")
            labels = {LABEL: "1", LABEL_INPUTS: wanted}
            (docker_build if image.base else debootstrap_import)(client, image, labels)
            log(f"built {image.ref} in {time.monotonic() - started:.1f}s")
            results[image.name] = "built"
        if image.archive and (results[image.name] == "built" or not image.archive_path.exists()):
            export_archive(client, image)
    # Tags moved by rebuilds leave the old images dangling; they are ours to remove.
    client.images.prune(filters={"dangling": True, "label": LABEL})
    return results


def describe(client: docker.DockerClient) -> list[dict[str, str]]:
    """Each image's reference and whether it is missing, current or stale."""
    rows = []
    for image in IMAGES:
        have = built_hash(client, image.ref)
        state = "missing" if have is None else ("current" if have == inputs_hash(image) else "stale")
        rows.append({"image": image.ref, "state": state, "archive": str(image.archive_path) if image.archive else ""})
    return rows


def require_current(client: docker.DockerClient, image: Image) -> None:
    for row in describe(client):
        if row["image"] == image.ref and row["state"] != "current":
            raise SystemExit(f"fleet: image {image.ref} is {row['state']}; run `sim/fleet build` (or `make setup`).")
