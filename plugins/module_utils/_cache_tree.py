# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The engine of the cache_tree module: a sha256 manifest of the model cache's folders (keys TREE/relative/path,
links recorded by target, never followed), hashes kept between runs, a copy compared with a manifest, and what
differs fetched from an rsync daemon. The module reads (read), decides without touching anything (plan), then acts
(act) unless in check mode."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time

CHUNK = 8 * 1024 * 1024
STAT_LINE = re.compile(r"^(Number of regular files transferred|Total bytes received):\s*([\d,]+)", re.MULTILINE)


class TreeError(Exception):
    """What the module fails with: the message, and `fields` for its result besides."""

    def __init__(self, msg, **fields):
        super().__init__(msg)
        self.fields = fields


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
    """Where manifest key TREE/relative/path is on this host."""
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
            raise TreeError(f"rsync from {source}/{name} failed ({rc}): {err.strip()[-500:]}", rc=rc)
        stats = {label: int(value.replace(",", "")) for label, value in STAT_LINE.findall(out)}
        fetched += stats.get("Number of regular files transferred", 0)
        received += stats.get("Total bytes received", 0)
    return fetched, received


def read(trees, manifest, hashes):
    """The trees as they are: (the manifest the run reports on, compare()'s answer against it); without `manifest`,
    the trees' own manifest (walk()) and None."""
    if manifest is None:
        absent = [path for path in trees.values() if not os.path.isdir(path)]
        if absent:
            raise TreeError(f"No such folder: {', '.join(absent)}")
        return walk(trees, hashes), None
    unknown = sorted({key.partition("/")[0] for key in manifest} - set(trees))
    if unknown:
        raise TreeError(f"The manifest has trees this host does not name in trees: {', '.join(unknown)}")
    return manifest, compare(trees, manifest, hashes)


def verdict(found):
    """The result's view of compare()'s `found`."""
    missing, differ, _shorter = found
    return {"missing": missing, "differ": differ, "complete": not (missing or differ)}


def plan(manifest, found, with_links, source):
    """What a run does about read()'s answer, decided without touching anything. Returns the result as it stands
    before acting (all that check mode reports) and the steps: `link`, the manifest's links to make where they are
    missing or differ (with `with_links`), then `fetch`, the source to fetch from where the copy is incomplete (None:
    no fetch)."""
    if found is None:
        return {"changed": False, "manifest": manifest}, {"link": [], "fetch": None}
    result = verdict(found)
    links = [key for key in result["missing"] + result["differ"] if "link" in manifest[key]] if with_links else []
    fetch_from = source if source and not result["complete"] else None
    result = {"changed": bool(links or fetch_from), **result, "linked": len(links)}
    return result, {"link": links, "fetch": fetch_from}


def act(module, trees, manifest, hashes, found, result, steps, timeout):
    """Carry out plan()'s steps and keep the hashes; returns `result` as the run leaves it. The trees are read again
    after the links are made, so that only what still differs is fetched. Raises TreeError where rsync fails, and
    where anything still differs after the fetch (the hashes kept all the same)."""
    result = dict(result)
    if steps["link"]:
        make_links(trees, manifest, steps["link"])
        found = compare(trees, manifest, hashes)
        result.update(verdict(found))
    if steps["fetch"] and not result["complete"]:
        missing, differ, shorter = found
        started = time.monotonic()
        # rsync's size and time check would keep a file of the right size but the wrong content; a shorter file
        # stays, for rsync to resume.
        for key in sorted(set(differ) - set(shorter)):
            remove(local_path(trees, key))
        fetched, received = fetch(module, trees, steps["fetch"], missing + differ, timeout)
        after = compare(trees, manifest, hashes)
        result.update(
            fetched=fetched,
            received_bytes=received,
            seconds=round(time.monotonic() - started, 3),
            complete=not (after[0] or after[1]),
        )
        if not result["complete"]:
            hashes.save()
            raise TreeError(
                f"After the copy from {steps['fetch']}, {len(after[0]) + len(after[1])} entries still "
                f"differ from the manifest (first: {(after[0] + after[1])[0]})",
                **result,
            )
    hashes.save()
    return result


def totals(manifest, hashes):
    """The manifest's regular files, their bytes, and the files hashed in this run."""
    files = [entry for entry in manifest.values() if "sha256" in entry]
    return {"files": len(files), "bytes": sum(entry["size"] for entry in files), "hashed": hashes.hashed}
