"""Build the simulator's images with no container registry.

Root images are Debian (bookworm, unless an image names another release) made by debootstrap and
brought in with `docker import`; every other image builds FROM one of them. Each image carries a
hash of its build inputs in a label, so a build is skipped while its inputs are unchanged and
redone as soon as one of them changes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
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
    # Python distributions to install offline: fetched on the host (containers cannot reach PyPI) with
    # their dependencies less `wheels_without`, into the build context's wheels/ (see wheelhouse()).
    wheels: tuple[str, ...] = ()
    wheels_without: tuple[str, ...] = ()
    suite: str = SUITE  # a root image's Debian release
    folder: str = ""  # the build context under IMAGES_DIR, when it is not the image's name
    args: tuple[tuple[str, str], ...] = ()  # build arguments besides BASE

    @property
    def ref(self) -> str:
        return f"thorfleet-sim/{self.name}:{VERSION}"

    @property
    def context(self) -> Path | None:
        return None if self.base is None else IMAGES_DIR / (self.folder or self.name)

    @property
    def archive_path(self) -> Path:
        return ARCHIVE_DIR / f"{self.name}.tar.gz"


# What a Thor unit needs from its OS for this collection: systemd, a Docker engine (Jetson units
# run Docker's packages; Debian's docker.io is the offline equivalent), python3 with requests for
# community.docker's modules, rsync, aria2 and mktorrent for the model cache (a unit's own archive has them; a
# scenario removes aria2 from a unit to install it the real way), iproute2 for tc, sshd and sudo (Ansible
# reaches a unit over SSH as an ordinary user and becomes root, as on JetPack), and busybox-static
# to make the few-megabyte probe image from.
BASE = Image(
    "base",
    packages=(
        "systemd",
        "systemd-sysv",
        "dbus",
        "docker.io",
        "rsync",
        "aria2",
        "mktorrent",
        "python3",
        "python3-requests",
        "iproute2",
        "iptables",
        "ca-certificates",
        "procps",
        "busybox-static",
        "openssh-server",
        "sudo",
    ),
)
# The service stand-ins' base: small, because every unit receives each of them as an archive.
RUNTIME = Image("runtime", packages=("python3", "python3-yaml", "python3-psycopg2", "ca-certificates"))
UNIT = Image("unit", base=BASE)
PROBE = Image("probe", base=BASE, archive=True)
POSTGRES = Image("postgres", base=RUNTIME, archive=True, args=(("PG_MAJOR", "15"),))
VLLM = Image("vllm-sim", base=RUNTIME, archive=True)
LITELLM = Image("litellm-sim", base=RUNTIME, archive=True)
# The metrics_proxy role's nginx.
NGINX = Image("nginx", base=RUNTIME, archive=True)
IMAGES = (BASE, RUNTIME, UNIT, PROBE, POSTGRES, VLLM, LITELLM, NGINX)
# Open WebUI at the version the open_webui role pins (container_images_open_webui), without the two
# dependencies that only bring torch. About 0.5 GB of wheels and minutes to build: built on demand only,
# by `sim/fleet build open-webui` (the workshop scenario's prepare does it), not with the images everyone needs.
OPEN_WEBUI_VERSION = "0.12.4"
OPEN_WEBUI = Image(
    "open-webui",
    base=RUNTIME,
    archive=True,
    # pip evaluates dependency markers with the host's Python, not the image's 3.11.2: redis needs
    # async-timeout below 3.11.3, so it is named here.
    wheels=(f"open-webui=={OPEN_WEBUI_VERSION}", "async-timeout==5.0.1"),
    wheels_without=("accelerate", "sentence-transformers"),
)
# Headless Chromium, for a screenshot of a page a unit serves (the workshop scenario's chat page).
BROWSER = Image("browser", base=RUNTIME)
# A real Prometheus that scrapes the units, for the metrics tests.
PROMETHEUS = Image("prometheus", base=RUNTIME)
# PostgreSQL of the next major version (Debian has 17 in trixie only), whose data folder 15's cannot read: for the
# postgres role's major upgrade (the gateway scenario). Built on demand, with its root image.
TRIXIE = Image("trixie", packages=("ca-certificates",), suite="trixie")
POSTGRES_17 = Image("postgres-17", base=TRIXIE, archive=True, folder="postgres", args=(("PG_MAJOR", "17"),))
ON_DEMAND = (OPEN_WEBUI, BROWSER, PROMETHEUS, POSTGRES_17)
# Wheels are for the runtime image's Python and C library (Debian bookworm), on this machine's architecture.
WHEELS_PYTHON = "3.11"
WHEELS_GLIBC_MINOR = 36
WHEELS_DIR = CACHE_DIR / "wheels"


@dataclass(frozen=True)
class Variant:
    """Another version of a service image, for rolling updates: `image` under `tag`, with `env` set."""

    image: Image
    tag: str
    env: tuple[tuple[str, str], ...] = ()
    archive: bool = True

    @property
    def name(self) -> str:
        return f"{self.image.name}:{self.tag}"

    @property
    def ref(self) -> str:
        return f"thorfleet-sim/{self.image.name}:{self.tag}"

    @property
    def archive_path(self) -> Path:
        return ARCHIVE_DIR / f"{self.image.name}-{self.tag}.tar.gz"

    def dockerfile(self) -> str:
        return f"FROM {self.image.ref}\n" + "".join(f"ENV {key}={value}\n" for key, value in self.env)


# Versions to roll the fleet to: a good next version of PostgreSQL (the same major: its data carries
# over), vLLM and LiteLLM, and a vLLM whose GPU broke (health and model list answer, every completion
# fails), which a rolling update must roll back.
NEXT = "0.1.1"
VARIANTS = (
    Variant(POSTGRES, NEXT),
    Variant(VLLM, NEXT),
    Variant(LITELLM, NEXT),
    Variant(VLLM, f"{NEXT}-broken", (("THORSIM_VLLM_BROKEN_GPU", "1"),)),
)


def inputs_hash(image: Image | Variant) -> str:
    """Hash of everything an image is built from: its base's hash, packages, files and their modes."""
    digest = hashlib.sha256()
    if isinstance(image, Variant):
        for item in (inputs_hash(image.image), image.tag, image.dockerfile()):
            digest.update(item.encode() + b"\0")
        return digest.hexdigest()
    if image.base is None:
        recipe = (image.suite, *image.packages, *DEBRIS, *(f"{k}\0{v}" for k, v in sorted(ROOT_FILES.items())))
    else:
        recipe = (inputs_hash(image.base), *wheels_spec(image), *(f"{k}={v}" for k, v in image.args))
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
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(image.packages)}", image.suite, str(rootfs)]
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


def requirements(wheel: Path, without: tuple[str, ...]) -> list[str]:
    """A wheel's own requirements (no extras), less the distributions named in `without`."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    skip = {re.sub(r"[-_.]+", "-", n).lower() for n in without}
    wanted = []
    for line in metadata.splitlines():
        if line.startswith("Requires-Dist:") and "extra ==" not in line:
            spec = line.split(":", 1)[1].strip()
            if re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;(]", spec, maxsplit=1)[0]).lower() not in skip:
                wanted.append(spec)
    return wanted


def wheels_spec(image: Image) -> tuple[str, ...]:
    """What an image's wheelhouse is made from (nothing for an image without wheels)."""
    if not image.wheels:
        return ()
    return (*image.wheels, "without", *image.wheels_without, WHEELS_PYTHON, f"glibc-2.{WHEELS_GLIBC_MINOR}")


def wheelhouse(image: Image) -> Path:
    """Download `image.wheels`, pip itself and their dependencies (less `wheels_without`) once, on the host."""
    spec = hashlib.sha256("\0".join(wheels_spec(image)).encode()).hexdigest()[:12]
    target = WHEELS_DIR / f"{image.name}-{spec}"
    if (target / "requirements.txt").exists():
        return target
    arch = platform.machine()
    platforms = [f"manylinux_2_{minor}_{arch}" for minor in range(5, WHEELS_GLIBC_MINOR + 1)]
    platforms += [f"manylinux{tag}_{arch}" for tag in ("1", "2010", "2014")]
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--python-version", WHEELS_PYTHON]
    pip += ["--implementation", "cp", *(f"--platform={p}" for p in platforms), "--dest", str(target)]
    log(f"downloading the wheels of {', '.join(image.wheels)} into {target}")
    partial = target / "requirements.txt.partial"
    try:
        subprocess.run([*pip, "--no-deps", *image.wheels, "pip"], check=True)
        wanted = [spec for wheel in sorted(target.glob("*.whl")) for spec in requirements(wheel, image.wheels_without)]
        partial.write_text("".join(f"{spec}\n" for spec in wanted), encoding="utf-8")
        subprocess.run([*pip, "-r", str(partial)], check=True)
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"fleet build: pip could not download {image.name}'s wheels (exit {exc.returncode})") from None
    partial.replace(target / "requirements.txt")
    return target


def docker_build(client: docker.DockerClient, image: Image, labels: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="context-") as tmp:
        context = image.context
        if image.wheels:
            # The build context is the image's folder plus the wheelhouse, linked in (same file system).
            context = Path(tmp) / "context"
            shutil.copytree(image.context, context)
            shutil.copytree(wheelhouse(image), context / "wheels", copy_function=os.link)
        try:
            client.images.build(
                path=str(context),
                tag=image.ref,
                buildargs={"BASE": image.base.ref, **dict(image.args)},
                labels=labels,
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            lines = [str(entry.get("stream", entry.get("error", ""))).rstrip() for entry in exc.build_log]
            tail = "\n".join(filter(None, lines[-15:]))
            raise SystemExit(f"fleet build: {image.ref} failed: {exc}\n{tail}") from None


def variant_build(client: docker.DockerClient, variant: Variant, labels: dict[str, str]) -> None:
    # The labels alone make its image id differ from its base's, as another release's would.
    try:
        client.images.build(fileobj=io.BytesIO(variant.dockerfile().encode()), tag=variant.ref, labels=labels, rm=True)
    except docker.errors.BuildError as exc:
        raise SystemExit(f"fleet build: {variant.ref} failed: {exc}") from None


def archive_stamp(image: Image | Variant) -> Path:
    """Beside the archive: the inputs hash of the image it was saved from."""
    return image.archive_path.with_name(image.archive_path.name + ".inputs")


def export_archive(client: docker.DockerClient, image: Image | Variant, wanted: str) -> None:
    """Save an image as the compressed tarball that container_images copies to air-gapped units, stamped with the
    inputs hash it was built from: an archive left from an earlier build (a build cut off before its export) is
    saved again, where a check of the image alone would pass it."""
    ARCHIVE_DIR.mkdir(parents=True, exist_ok=True)
    partial = image.archive_path.with_name(image.archive_path.name + ".partial")
    # Level 1: most of the size win at a fraction of the time; `docker load` reads gzip as it is.
    with gzip.open(partial, "wb", compresslevel=1) as out:
        for chunk in client.images.get(image.ref).save(named=True):
            out.write(chunk)
    partial.replace(image.archive_path)
    archive_stamp(image).write_text(wanted + "\n", encoding="utf-8")


def archive_current(image: Image | Variant, wanted: str) -> bool:
    stamp = archive_stamp(image)
    return image.archive_path.exists() and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == wanted


def build(client: docker.DockerClient, force: bool = False, extra: tuple[Image, ...] = ()) -> dict[str, str]:
    """Build every image (and the `extra` ones of ON_DEMAND) whose inputs changed; return {name: 'built'|'cached'}."""
    results: dict[str, str] = {}
    # An on-demand image's base comes first, where it is not one of IMAGES.
    bases = tuple(image.base for image in extra if image.base is not None and image.base not in IMAGES)
    for image in dict.fromkeys((*IMAGES, *VARIANTS, *bases, *extra)):
        wanted = inputs_hash(image)
        if not force and built_hash(client, image.ref) == wanted:
            results[image.name] = "cached"
        else:
            started = time.monotonic()
            log(f"building {image.ref}")
            labels = {LABEL: "1", LABEL_INPUTS: wanted}
            if isinstance(image, Variant):
                variant_build(client, image, labels)
            else:
                (docker_build if image.base else debootstrap_import)(client, image, labels)
            log(f"built {image.ref} in {time.monotonic() - started:.1f}s")
            results[image.name] = "built"
        if image.archive and (results[image.name] == "built" or not archive_current(image, wanted)):
            export_archive(client, image, wanted)
    # Tags moved by rebuilds leave the old images dangling; they are ours to remove.
    client.images.prune(filters={"dangling": True, "label": LABEL})
    return results


def describe(client: docker.DockerClient) -> list[dict[str, str]]:
    """Each image's reference and whether it is missing, current or stale."""
    rows = []
    for image in (*IMAGES, *VARIANTS, TRIXIE, *ON_DEMAND):
        have = built_hash(client, image.ref)
        state = "missing" if have is None else ("current" if have == inputs_hash(image) else "stale")
        rows.append({"image": image.ref, "state": state, "archive": str(image.archive_path) if image.archive else ""})
    return rows


def require_current(client: docker.DockerClient, image: Image) -> None:
    for row in describe(client):
        if row["image"] == image.ref and row["state"] != "current":
            raise SystemExit(f"fleet: image {image.ref} is {row['state']}; run `sim/fleet build` (or `make setup`).")
