# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""The model cache as a private BitTorrent swarm: what the cache_torrent module needs besides mktorrent and aria2.
The torrent holds the manifest's regular files under their manifest keys (TREE/relative/path); the source seeds them
through a folder of links named after the torrent, and each unit downloads them straight into its own trees, by
aria2's per-file output paths. Links (HF snapshots) are not in the torrent: the manifest says where each points."""

from __future__ import annotations

import hashlib
import os

from ansible_collections.thorfleet.llm.plugins.module_utils._cache_tree import local_path, remove

# Pieces between 256 KiB and 16 MiB, about this many for the payload: few enough for a small .torrent and tracker
# traffic, many enough that a peer has something to trade early.
PIECES = 1500
PIECE_MIN_LOG2 = 18
PIECE_MAX_LOG2 = 24


class BencodeError(ValueError):
    """Not a bencoded value, or one with bytes after it."""


def _decode(data, at):
    """(value, end) of the bencoded value at `at`: int, bytes, list or dict (bytes keys)."""
    kind = data[at : at + 1]
    if kind == b"i":
        end = data.index(b"e", at)
        return int(data[at + 1 : end]), end + 1
    if kind == b"l":
        items, at = [], at + 1
        while data[at : at + 1] != b"e":
            item, at = _decode(data, at)
            items.append(item)
        return items, at + 1
    if kind == b"d":
        items, at = {}, at + 1
        while data[at : at + 1] != b"e":
            key, at = _decode(data, at)
            items[key], at = _decode(data, at)
        return items, at + 1
    if kind.isdigit():
        colon = data.index(b":", at)
        start = colon + 1
        end = start + int(data[at:colon])
        if end > len(data):
            raise BencodeError("a string runs past the end")
        return data[start:end], end
    raise BencodeError(f"unexpected {kind!r} at byte {at}")


def torrent(data):
    """A .torrent's name, info hash (hex), piece length and files in order, as manifest keys with their sizes."""
    try:
        meta, end = _decode(data, 0)
        if end != len(data) or not isinstance(meta, dict) or b"info" not in meta:
            raise BencodeError("not a torrent")
        # The info hash is over the info dictionary's bytes exactly as written: found by decoding the keys before it.
        at = 1
        while True:
            key, at = _decode(data, at)
            start = at
            _value, at = _decode(data, at)
            if key == b"info":
                break
    except (IndexError, ValueError) as exc:
        raise BencodeError(str(exc)) from None
    info = meta[b"info"]
    files = [("/".join(p.decode() for p in f[b"path"]), f[b"length"]) for f in info.get(b"files", [])]
    return {
        "name": info[b"name"].decode(),
        "info_hash": hashlib.sha1(data[start:at]).hexdigest(),
        "piece_length": info[b"piece length"],
        "files": files,
    }


def payload(manifest):
    """The manifest's regular files as (key, size), in key order, and their total size."""
    files = sorted((key, entry["size"]) for key, entry in manifest.items() if "sha256" in entry)
    return files, sum(size for _key, size in files)


def piece_log2(total):
    """log2 of the piece length for a payload of `total` bytes (mktorrent -l)."""
    log2 = PIECE_MIN_LOG2
    while log2 < PIECE_MAX_LOG2 and total > PIECES << log2:
        log2 += 1
    return log2


def name(manifest):
    """The torrent's name, which changes with the manifest: a torrent made for other content is never reused."""
    digest = hashlib.sha256()
    for key, size in payload(manifest)[0]:
        digest.update(f"{key}\0{size}\0{manifest[key]['sha256']}\n".encode())
    return "thorfleet-cache-" + digest.hexdigest()[:16]


def staging(root, manifest, trees):
    """{link path: target} of the folder the source seeds from: ROOT/NAME/KEY -> the file in the source's trees."""
    base = os.path.join(root, name(manifest))
    return {os.path.join(base, key): local_path(trees, key) for key, _size in payload(manifest)[0]}


def torrent_path(workdir, manifest):
    return os.path.join(workdir, name(manifest) + ".torrent")


def made(workdir, manifest):
    """torrent() of the .torrent made for this manifest, None where it is not made."""
    try:
        with open(torrent_path(workdir, manifest), "rb") as f:
            return torrent(f.read())
    except FileNotFoundError:
        return None


def read(workdir, manifest, trees):
    """What the source's torrent folder holds: each staging link's target (None where absent), whether the torrent is
    made, and the entries that belong to no torrent of this manifest (an earlier one's)."""
    want = staging(workdir, manifest, trees)
    mine = name(manifest)
    listed = sorted(os.listdir(workdir)) if os.path.isdir(workdir) else []
    return {
        "links": {path: os.readlink(path) if os.path.islink(path) else None for path in want},
        "torrent": os.path.exists(torrent_path(workdir, manifest)),
        "stale": [entry for entry in listed if entry.startswith("thorfleet-cache-") and not entry.startswith(mine)],
    }


def plan(found, workdir, manifest, trees):
    """Steps, in order, that bring the torrent folder to seed this manifest: (verb, argument) with verbs remove (an
    earlier torrent or its folder), link (path, target) and make (the .torrent, by mktorrent)."""
    want = staging(workdir, manifest, trees)
    steps = [("remove", os.path.join(workdir, entry)) for entry in found["stale"]]
    steps += [("link", (path, target)) for path, target in sorted(want.items()) if found["links"][path] != target]
    if not found["torrent"]:
        steps.append(("make", torrent_path(workdir, manifest)))
    return steps


def act(steps, make):
    """Carry out plan()'s steps; `make(path)` writes the .torrent there (mktorrent, by the module)."""
    for verb, argument in steps:
        if verb == "remove":
            remove(argument)
        elif verb == "link":
            path, target = argument
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                remove(path)
            os.symlink(target, path)
        elif verb == "make":
            make(argument)


# The largest piece (piece_log2's bound): bytes arrive piece by piece.
class Progress:
    """One unit's download as its aria2 reports it at each poll: how far, how fast, and where its bytes came from.
    aria2 counts what a download received in all, and each peer's speed only: the bytes received between two polls
    are shared between the source and the other units in proportion to the speeds they were sent at (at the last
    speeds known where the peers sent nothing at that moment). aria2 counts what its check of the files found on disk
    (a download cut short) in the same figure: what the unit's fleet interface received between two polls bounds
    what arrived, so a check that ends between two polls is counted as held, however fast the link."""

    def __init__(self, source_ip):
        self.source_ip = source_ip
        self.first = None
        self.last = None
        self.from_source = 0.0
        self.from_peers = 0.0
        self.share = 0.0
        self.held = 0
        self.rx = None
        self.status = {}

    def update(self, now, status, peers, rx):
        """`status`: aria2's completedLength, totalLength, downloadSpeed and uploadLength (strings, as it sends them),
        and verifiedLength or verifyIntegrityPending while it checks the files;
        `peers`: its getPeers answer (ip, downloadSpeed); `rx`: the bytes the unit's fleet interface has received."""
        done = int(status.get("completedLength", 0))
        # While aria2 checks what the unit held, what it finds is not received: counting starts when the check ends.
        if self.first is None or "verifiedLength" in status or status.get("verifyIntegrityPending") == "true":
            self.first = (now, done)
        elif done > self.last[1]:
            # The link's count includes packet headers and the poll itself, so it bounds the payload from above.
            received = min(done - self.last[1], max(rx - self.rx, 0))
            self.held += done - self.last[1] - received
            speeds = [(peer.get("ip") == self.source_ip, int(peer.get("downloadSpeed", 0))) for peer in peers]
            total = sum(speed for _source, speed in speeds)
            if total:
                self.share = sum(speed for source, speed in speeds if source) / total
            self.from_source += received * self.share
            self.from_peers += received * (1 - self.share)
        self.last = (now, done)
        self.rx = rx
        self.status = status

    @property
    def complete(self):
        total = int(self.status.get("totalLength", 0))
        return total > 0 and int(self.status.get("completedLength", 0)) == total

    @property
    def tenth(self):
        """Tenths of the way done (0-10), for printing at each step."""
        total = int(self.status.get("totalLength", 0))
        return 10 * int(self.status.get("completedLength", 0)) // total if total else 0

    def figures(self):
        """Where the unit stands, for the swarm's total."""
        return {
            "done": int(self.status.get("completedLength", 0)),
            "total": int(self.status.get("totalLength", 0)),
            "speed": int(self.status.get("downloadSpeed", 0)),
            "from_source": int(self.from_source),
            "from_peers": int(self.from_peers),
        }

    def line(self, host):
        total = int(self.status.get("totalLength", 0))
        done = int(self.status.get("completedLength", 0))
        percent = 100.0 * done / total if total else 0.0
        speed = int(self.status.get("downloadSpeed", 0))
        return (
            f"{host}: {percent:5.1f}% of {total / 1e6:.1f} MB, {speed / 1e6:.1f} MB/s;"
            f" from the source {self.from_source / 1e6:.1f} MB, from peers {self.from_peers / 1e6:.1f} MB,"
            f" sent to peers {int(self.status.get('uploadLength', 0)) / 1e6:.1f} MB"
        )

    def result(self):
        started, done_at_start = self.first or (0.0, 0)
        ended, done = self.last or (0.0, 0)
        return {
            "complete": self.complete,
            "bytes": done - done_at_start - self.held,
            "seconds": round(ended - started, 1),
            "from_source": int(self.from_source),
            "from_peers": int(self.from_peers),
            "uploaded": int(self.status.get("uploadLength", 0)),
        }
