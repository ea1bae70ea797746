#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cache_tree
short_description: A sha256 manifest of model cache folders; verify a copy and fetch what differs over rsync
version_added: 0.1.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
description:
  - Without O(manifest), walks the folders in O(trees) and returns their manifest, the sha256 and size of every
    regular file and the target of every symbolic link (links are recorded, never followed).
  - With O(manifest), compares the folders with it, file by file, and returns what is missing or differs.
    Files that are not in the manifest are left alone.
  - With O(manifest) and O(source), fetches what is missing or differs from an rsync daemon
    (C(rsync -a --partial), no compression, only the files that need it, links as links), then verifies again.
    A file of the right size but the wrong content is removed first, because rsync's size and time check
    would keep it. A shorter file is kept, so that rsync resumes it.
  - Hashes are kept in O(hash_cache) and reused while a file's size, mtime, ctime and inode are unchanged, so a
    repeated run reads only files that changed. Writing that cache is bookkeeping and is not reported as a change.
attributes:
  check_mode:
    support: full
    details:
      - Hashes and compares but neither fetches, removes nor writes O(hash_cache); reports as changed what would
        be fetched.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  trees:
    description:
      - Folders by name, for example C(huggingface) -> C(/opt/thorfleet/data/models/huggingface). Manifest keys
        are C(name/relative/path); with O(source), each name is also the rsync module to fetch from.
    type: dict
    required: true
  manifest:
    description:
      - The manifest to verify against, as this module returned it on the source (RV(manifest)).
    type: dict
  source:
    description:
      - Base URL of the rsync daemon to fetch from, C(rsync://ADDRESS:PORT). Needs O(manifest).
    type: str
  hash_cache:
    description:
      - File where hashes are kept between runs. Its folder is created.
    type: path
    required: true
  rehash:
    description:
      - Hash every file again, ignoring O(hash_cache) (finds content changed behind an unchanged ctime).
    type: bool
    default: false
  timeout:
    description:
      - Seconds without I/O after which rsync gives up (C(--timeout), C(--contimeout)).
    type: int
    default: 300
  make_links:
    description:
      - With O(manifest), first makes each link of the manifest that is missing or points elsewhere, in place of
        whatever is there (a torrent carries files, not links), then verifies.
    type: bool
    default: false
notes:
  - Needs C(rsync) on the host when O(source) is given.
"""

EXAMPLES = r"""
- name: Manifest of the cache source
  thorfleet.llm.cache_tree:
    trees:
      huggingface: /srv/thorfleet/data/models/huggingface
      vllm_cache: /srv/thorfleet/data/vllm_cache
    hash_cache: /var/lib/thorfleet/model_cache/hashes.json
  register: source_tree

- name: Fetch what differs from a peer that holds a verified copy
  thorfleet.llm.cache_tree:
    trees:
      huggingface: /opt/thorfleet/data/models/huggingface
      vllm_cache: /opt/thorfleet/data/vllm_cache
    manifest: "{{ source_tree.manifest }}"
    source: rsync://10.0.0.11:873
    hash_cache: /var/lib/thorfleet/model_cache/hashes.json
"""

RETURN = r"""
manifest:
  description: Every file (C(size), C(sha256)) and link (C(link)) by C(tree/relative/path).
  returned: without O(manifest)
  type: dict
  sample: {"huggingface/hub/models--openai--gpt-oss-120b/refs/main": {"size": 40, "sha256": "9f86d08..."}}
files:
  description: Number of regular files in the manifest.
  returned: always
  type: int
bytes:
  description: Total size of the regular files in the manifest.
  returned: always
  type: int
hashed:
  description: Files hashed in this run (the others came from O(hash_cache)).
  returned: always
  type: int
complete:
  description: Whether the folders match O(manifest) (after the fetch, with O(source)).
  returned: with O(manifest)
  type: bool
missing:
  description: Manifest entries absent before any fetch.
  returned: with O(manifest)
  type: list
  elements: str
differ:
  description: Manifest entries present but different (content, size, kind or link target) before any fetch.
  returned: with O(manifest)
  type: list
  elements: str
linked:
  description: Links made (would be, in check mode) with O(make_links).
  returned: with O(manifest)
  type: int
fetched:
  description: Number of files rsync transferred.
  returned: with O(source)
  type: int
received_bytes:
  description: Bytes received over the network, from rsync's C(--stats).
  returned: with O(source)
  type: int
seconds:
  description: Wall time of the fetch.
  returned: with O(source)
  type: float
"""

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_type_path

CHUNK = 8 * 1024 * 1024
STAT_LINE = re.compile(r"^(Number of regular files transferred|Total bytes received):\s*([\d,]+)", re.MULTILINE)


class HashCache:
    """sha256 by path, trusted while size, mtime, ctime and inode are what they were when it was hashed."""

    def __init__(self, path, rehash):
        self.path = path
        self.old = {}
        if not rehash and os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                self.old = json.load(f)
        self.new = {}
        self.hashed = 0

    def sha256(self, path, st):
        key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        cached = self.old.get(path)
        if cached and cached[:4] == key:
            digest = cached[4]
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(CHUNK), b""):
                    h.update(chunk)
            digest = h.hexdigest()
            self.hashed += 1
        self.new[path] = [*key, digest]
        return digest

    def save(self):
        # Only the entries seen in this run, so that the cache does not outgrow the trees.
        if self.new == self.old:
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(self.new, f)
        os.replace(tmp, self.path)


def walk(trees, hashes):
    """The manifest of `trees`: regular files by sha256 and size, links by target."""
    manifest = {}
    for name, root in sorted(trees.items()):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for entry in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                path = os.path.join(dirpath, entry)
                key = name + "/" + os.path.relpath(path, root)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    manifest[key] = {"link": os.readlink(path)}
                elif stat.S_ISREG(st.st_mode):
                    manifest[key] = {"size": st.st_size, "sha256": hashes.sha256(path, st)}
    return manifest


def local_path(trees, key):
    name, _slash, rel = key.partition("/")
    return os.path.join(trees[name], rel)


def compare(trees, manifest, hashes):
    """Entries missing, and entries present but different, as (missing, differ, shorter)."""
    missing, differ, shorter = [], [], []
    for key, want in sorted(manifest.items()):
        path = local_path(trees, key)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            missing.append(key)
            continue
        if "link" in want:
            if not (stat.S_ISLNK(st.st_mode) and os.readlink(path) == want["link"]):
                differ.append(key)
        elif not stat.S_ISREG(st.st_mode) or st.st_size > want["size"]:
            differ.append(key)
        elif st.st_size < want["size"]:
            # Most likely a transfer cut short: rsync resumes it.
            differ.append(key)
            shorter.append(key)
        elif hashes.sha256(path, st) != want["sha256"]:
            differ.append(key)
    return missing, differ, shorter


def make_links(trees, manifest, keys):
    """The manifest's links at `keys`, in place of whatever is there."""
    for key in keys:
        path = local_path(trees, key)
        if os.path.lexists(path):
            remove(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(manifest[key]["link"], path)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def fetch(module, trees, source, keys, timeout):
    """rsync only `keys` from `source`; returns (files transferred, bytes received)."""
    fetched = received = 0
    for name, root in sorted(trees.items()):
        rels = [key.partition("/")[2] for key in keys if key.partition("/")[0] == name]
        if not rels:
            continue
        os.makedirs(root, exist_ok=True)
        # The list goes in a file, not on stdin: rsync that cannot reach the source exits before reading
        # stdin, and the write then fails with a broken pipe instead of rsync's own message.
        with tempfile.NamedTemporaryFile("w", dir=module.tmpdir, suffix=".files", delete=False) as listing:
            listing.write("\n".join(rels) + "\n")
        # -a keeps links as links (never -L); no -z: safetensors do not compress; --partial keeps a cut-short
        # file so that the next try resumes it; --files-from fetches exactly what the manifest says is needed.
        argv = [
            module.get_bin_path("rsync", required=True),
            "-a",
            "--partial",
            "--stats",
            f"--timeout={timeout}",
            f"--contimeout={timeout}",
            f"--files-from={listing.name}",
            f"{source.rstrip('/')}/{name}/",
            root.rstrip("/") + "/",
        ]
        rc, out, err = module.run_command(argv)
        os.remove(listing.name)
        if rc != 0:
            module.fail_json(msg=f"rsync from {source}/{name} failed ({rc}): {err.strip()[-500:]}", rc=rc)
        stats = {label: int(value.replace(",", "")) for label, value in STAT_LINE.findall(out)}
        fetched += stats.get("Number of regular files transferred", 0)
        received += stats.get("Total bytes received", 0)
    return fetched, received


def argument_spec():
    return {
        "trees": {"type": "dict", "required": True},
        "manifest": {"type": "dict"},
        "source": {"type": "str"},
        "hash_cache": {"type": "path", "required": True},
        "rehash": {"type": "bool", "default": False},
        "timeout": {"type": "int", "default": 300},
        "make_links": {"type": "bool", "default": False},
    }


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_by={"source": "manifest"},
        supports_check_mode=True,
    )
    p = module.params
    trees = {name: check_type_path(path) for name, path in p["trees"].items()}  # type=path for each value
    hashes = HashCache(p["hash_cache"], p["rehash"])
    manifest = p["manifest"]
    if manifest is None:
        absent = [path for path in trees.values() if not os.path.isdir(path)]
        if absent:
            module.fail_json(msg=f"No such folder: {', '.join(absent)}")
        manifest = walk(trees, hashes)
        result = {"changed": False, "manifest": manifest}
    else:
        unknown = sorted({key.partition("/")[0] for key in manifest} - set(trees))
        if unknown:
            module.fail_json(msg=f"The manifest has trees this host does not name in trees: {', '.join(unknown)}")
        missing, differ, shorter = compare(trees, manifest, hashes)
        unlinked = [key for key in missing + differ if "link" in manifest[key]] if p["make_links"] else []
        if unlinked and not module.check_mode:
            make_links(trees, manifest, unlinked)
            missing, differ, shorter = compare(trees, manifest, hashes)
        result = {"changed": bool(unlinked), "missing": missing, "differ": differ, "complete": not (missing or differ)}
        result["linked"] = len(unlinked)
        if p["source"] and not result["complete"]:
            result["changed"] = True
            if not module.check_mode:
                started = time.monotonic()
                for key in sorted(set(differ) - set(shorter)):
                    remove(local_path(trees, key))
                fetched, received = fetch(module, trees, p["source"], missing + differ, p["timeout"])
                after = compare(trees, manifest, hashes)
                result.update(
                    fetched=fetched,
                    received_bytes=received,
                    seconds=round(time.monotonic() - started, 3),
                    complete=not (after[0] or after[1]),
                )
                if not result["complete"]:
                    hashes.save()
                    module.fail_json(
                        msg=f"After the copy from {p['source']}, {len(after[0]) + len(after[1])} entries still "
                        f"differ from the manifest (first: {(after[0] + after[1])[0]})",
                        **result,
                    )
    files = [entry for entry in manifest.values() if "sha256" in entry]
    result.update(files=len(files), bytes=sum(entry["size"] for entry in files), hashed=hashes.hashed)
    if not module.check_mode:
        hashes.save()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
