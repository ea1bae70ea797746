"""Check the execution environment's build context that `make ee` wrote with `ansible-builder create`.

Usage: check_context.py EE_DIR REQUIREMENTS_TXT

EE_DIR holds collections/ansible_collections/thorfleet/llm (the built collection, unpacked, with its artefact beside
it) and context/ (ansible-builder's output). Every check prints what it found and the script exits 1 on the first
group that fails: the context must install the artefact that `ansible-galaxy collection build` wrote, with
meta/'s requirement files; `ansible-builder introspect` must find them in the collection as Galaxy ships it, next
to those of the collections it depends on; requirements.txt's pins must fall inside the collection's ranges; and
the EE's Python requirements must resolve together on PyPI for the base image's Python (pip, without installing).
"""

import filecmp
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import ansible_collections
import yaml
from packaging.requirements import Requirement

# The base image's Python (CentOS Stream 10), and the machines an EE runs on.
EE_PYTHON = "3.12"
EE_PLATFORMS = {
    "x86_64": ["manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "aarch64": ["manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
}
COLLECTION = "thorfleet.llm"


def lines(path):
    """A requirements or bindep file's entries, without comments and blank lines."""
    entries = (line.split("#", 1)[0].strip() for line in Path(path).read_text().splitlines())
    return [entry for entry in entries if entry]


def pins(requirements_txt):
    """requirements.txt's exact pins, by normalised name."""
    found = {}
    for line in lines(requirements_txt):
        requirement = Requirement(line)
        versions = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if versions:
            found[requirement.name.lower()] = versions[0]
    return found


def link_dependencies(collections_dir, manifest):
    """Put galaxy.yml's dependencies beside this collection, from the pinned `ansible` package, as an EE has them."""
    source = Path(next(iter(ansible_collections.__path__)))
    for name in manifest["collection_info"]["dependencies"]:
        namespace, collection = name.split(".")
        link = collections_dir / "ansible_collections" / namespace / collection
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(source / namespace / collection)


def introspect(collections_dir):
    output = subprocess.run(
        ["ansible-builder", "introspect", str(collections_dir)], check=True, capture_output=True, text=True
    ).stdout
    return yaml.safe_load(output)


def resolve(requirements, platform_tags):
    """pip's resolver on PyPI for the EE's Python and platform; nothing is installed. Returns pip's error or None."""
    with tempfile.TemporaryDirectory() as target:
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                   "--only-binary=:all:", "--python-version", EE_PYTHON, "--target", target,
                   "--report", f"{target}/report.json"]  # fmt: skip
        for tag in platform_tags:
            command += ["--platform", tag]
        result = subprocess.run(command + requirements, capture_output=True, text=True, check=False)
        if result.returncode:
            return result.stderr.strip() or result.stdout.strip()
        report = json.loads(Path(f"{target}/report.json").read_text())
        return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}


def main(ee_dir, requirements_txt):
    ee_dir = Path(ee_dir)
    collections_dir = ee_dir / "collections"
    root = collections_dir / "ansible_collections" / "thorfleet" / "llm"
    context = ee_dir / "context"
    build = context / "_build"
    manifest = json.loads((root / "MANIFEST.json").read_text())
    version = manifest["collection_info"]["version"]
    definition = yaml.safe_load((root / "meta" / "execution-environment.yml").read_text())
    dependencies = definition["dependencies"]
    artefact = root / f"thorfleet-llm-{version}.tar.gz"
    failures = []

    def check(ok, what):
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    # The context installs the built artefact and carries the collection's requirement files.
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    named = [entry["name"] for entry in galaxy["collections"]]
    check(named == [f"collections/{artefact.name}"], f"the EE installs {artefact.name} (galaxy.yml's version): {named}")
    copied = build / "collections" / artefact.name
    same = copied.is_file() and filecmp.cmp(copied, artefact, shallow=False)
    check(same, f"the context holds {artefact.name} as built")
    for name, entry in (("requirements.txt", "python"), ("bindep.txt", "system")):
        check(
            filecmp.cmp(build / name, root / dependencies[entry], shallow=False),
            f"_build/{name} is the collection's {dependencies[entry]}",
        )
    containerfile = (context / "Containerfile").read_text()
    base = definition["images"]["base_image"]["name"]
    check(f'ARG EE_BASE_IMAGE="{base}"' in containerfile, f"the Containerfile starts from {base}")
    refs = f"{dependencies['ansible_core']['package_pip']} {dependencies['ansible_runner']['package_pip']}"
    check(f'ARG ANSIBLE_INSTALL_REFS="{refs}"' in containerfile, f"the Containerfile installs {refs}")

    # The versions agree with the controller's pins.
    pinned = pins(requirements_txt)
    core = Requirement(dependencies["ansible_core"]["package_pip"])
    check(
        str(core.specifier) == f"=={pinned['ansible-core']}",
        f"ansible-core {core.specifier} is requirements.txt's {pinned['ansible-core']}",
    )
    for line in lines(root / dependencies["python"]):
        requirement = Requirement(line)
        have = pinned.get(requirement.name.lower())
        check(
            have is not None and requirement.specifier.contains(have),
            f"requirements.txt pins {requirement.name} {have}, inside {requirement.specifier}",
        )

    # ansible-builder finds the requirements in the collection as Galaxy ships it, beside its dependencies'.
    link_dependencies(collections_dir, manifest)
    found = introspect(collections_dir)
    for key, entry in (("python", "python"), ("system", "system")):
        want = [f"{line}  # from collection {COLLECTION}" for line in lines(root / dependencies[entry])]
        have = [line for line in found.get(key) or [] if line.endswith(f"# from collection {COLLECTION}")]
        check(have == want, f"introspect finds {COLLECTION}'s {key} requirements: {have}")
    others = sorted({line.rsplit("# from collection ", 1)[1] for line in found.get("python") or []} - {COLLECTION})
    print(f"     introspect also finds Python requirements of: {', '.join(others) or 'none'}")

    # The EE's Python requirements resolve together, as the image's build would install them.
    requirements = [line.split("#", 1)[0].strip() for line in found.get("python") or []]
    requirements += [dependencies["ansible_core"]["package_pip"], dependencies["ansible_runner"]["package_pip"]]
    for machine, tags in EE_PLATFORMS.items():
        result = resolve(requirements, tags)
        if isinstance(result, dict):
            chosen = ", ".join(f"{name} {result[name]}" for name in ("ansible-core", "ansible-runner", "matplotlib"))
            check(True, f"pip resolves the EE's Python requirements for Python {EE_PYTHON} on {machine}: {chosen}")
        else:
            check(False, f"pip resolves the EE's Python requirements for Python {EE_PYTHON} on {machine}:\n{result}")

    if failures:
        print(f"\n{len(failures)} check(s) failed: fix meta/execution-environment.yml or meta/ee-*.txt")
        return 1
    print(f"\nThe EE context in {context} is ready: podman build -t thorfleet-llm-ee:{version} {context}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
