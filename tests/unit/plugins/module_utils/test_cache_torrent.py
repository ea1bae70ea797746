"""The torrent side of the model cache: reading a .torrent (aria2's and mktorrent's format), the piece length, the
torrent's name, the source's folder of links and each unit's aria2 input file."""

from __future__ import annotations

import hashlib

import pytest
from ansible_collections.thorfleet.llm.plugins.module_utils._cache_torrent import (
    BencodeError,
    Progress,
    name,
    payload,
    piece_log2,
    staging,
    torrent,
)

MANIFEST = {
    "huggingface/hub/models--org--m/blobs/aaa": {"size": 1000, "sha256": "a" * 64},
    "huggingface/hub/models--org--m/refs/main": {"size": 40, "sha256": "b" * 64},
    "huggingface/hub/models--org--m/snapshots/rev/config.json": {"link": "../../blobs/aaa"},
    "vllm_cache/torch_compile_cache/model.bin": {"size": 5000, "sha256": "c" * 64},
}
SOURCE = {"huggingface": "/srv/thorfleet/data/models/huggingface", "vllm_cache": "/srv/thorfleet/data/vllm_cache"}
UNIT = {"huggingface": "/opt/thorfleet/data/models/huggingface", "vllm_cache": "/opt/thorfleet/data/vllm_cache"}


def bencode(value) -> bytes:
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(map(bencode, value)) + b"e"
    return b"d" + b"".join(bencode(k) + bencode(v) for k, v in sorted(value.items())) + b"e"


INFO = {
    "name": "thorfleet-cache-x",
    "piece length": 262144,
    "pieces": b"\x00" * 20,
    "private": 1,
    "files": [
        {"length": 1000, "path": ["huggingface", "hub", "models--org--m", "blobs", "aaa"]},
        {"length": 5000, "path": ["vllm_cache", "torch_compile_cache", "model.bin"]},
    ],
}


def test_a_torrent_is_read_with_its_info_hash_over_the_info_bytes_as_written():
    data = bencode({"announce": "http://10.0.0.1:6969/announce", "created by": "mktorrent 1.1", "info": INFO})
    found = torrent(data)
    assert found == {
        "name": "thorfleet-cache-x",
        "info_hash": hashlib.sha1(bencode(INFO)).hexdigest(),
        "piece_length": 262144,
        "files": [
            ("huggingface/hub/models--org--m/blobs/aaa", 1000),
            ("vllm_cache/torch_compile_cache/model.bin", 5000),
        ],
    }


@pytest.mark.parametrize("data", [b"", b"d4:infoe", b"d4:info" + bencode(INFO), bencode({"info": INFO}) + b"x", b"i1e"])
def test_what_is_not_a_whole_torrent_is_refused(data):
    with pytest.raises(BencodeError):
        torrent(data)


def test_pieces_are_about_fifteen_hundred_between_256_kib_and_16_mib():
    assert piece_log2(280_000_000) == 18  # 1068 pieces of 256 KiB
    assert piece_log2(1500 << 18) == 18
    assert piece_log2((1500 << 18) + 1) == 19
    assert piece_log2(122_000_000_000) == 24  # 7272 pieces: never above 16 MiB
    assert piece_log2(0) == 18


def test_the_payload_is_the_regular_files_and_the_name_follows_their_content():
    assert payload(MANIFEST) == (
        [
            ("huggingface/hub/models--org--m/blobs/aaa", 1000),
            ("huggingface/hub/models--org--m/refs/main", 40),
            ("vllm_cache/torch_compile_cache/model.bin", 5000),
        ],
        6040,
    )
    assert name(MANIFEST) == name(dict(reversed(MANIFEST.items())))
    changed = {**MANIFEST, "vllm_cache/torch_compile_cache/model.bin": {"size": 5000, "sha256": "d" * 64}}
    assert name(changed) != name(MANIFEST) and name(MANIFEST).startswith("thorfleet-cache-")
    # Links are not content of the torrent.
    assert name({k: v for k, v in MANIFEST.items() if "link" not in v}) == name(MANIFEST)


def test_the_source_seeds_through_links_named_by_manifest_key():
    base = f"/var/lib/thorfleet/torrent/{name(MANIFEST)}"
    hub, model = "hub/models--org--m", "torch_compile_cache/model.bin"
    assert staging("/var/lib/thorfleet/torrent", MANIFEST, SOURCE) == {
        f"{base}/huggingface/{hub}/blobs/aaa": f"{SOURCE['huggingface']}/{hub}/blobs/aaa",
        f"{base}/huggingface/{hub}/refs/main": f"{SOURCE['huggingface']}/{hub}/refs/main",
        f"{base}/vllm_cache/{model}": f"{SOURCE['vllm_cache']}/{model}",
    }


def test_progress_shares_each_polls_bytes_between_the_source_and_peers_by_their_speeds():
    progress = Progress("10.0.0.1")
    progress.update(0.0, {"completedLength": "0", "totalLength": "1000"}, [], 5000)
    assert not progress.complete
    peers = [{"ip": "10.0.0.1", "downloadSpeed": "100"}, {"ip": "10.0.0.3", "downloadSpeed": "300"}]
    progress.update(2.0, {"completedLength": "400", "totalLength": "1000", "downloadSpeed": "200"}, peers, 5420)
    assert (progress.from_source, progress.from_peers) == (100.0, 300.0)
    # A poll that found nothing new changes nothing; one whose peers have gone quiet keeps the last share.
    progress.update(3.0, {"completedLength": "400", "totalLength": "1000"}, peers, 5450)
    progress.update(4.0, {"completedLength": "1000", "totalLength": "1000", "uploadLength": "250"}, [], 6090)
    assert progress.complete
    assert progress.result() == {
        "complete": True,
        "bytes": 1000,
        "seconds": 4.0,
        "from_source": 250,
        "from_peers": 750,
        "uploaded": 250,
    }
    assert progress.line("thor-02") == (
        "thor-02: 100.0% of 0.0 MB, 0.0 MB/s; from the source 0.0 MB, from peers 0.0 MB, sent to peers 0.0 MB"
    )


def test_what_a_unit_held_already_is_checked_not_received():
    progress = Progress("10.0.0.1")
    progress.update(0.0, {"completedLength": "0", "totalLength": "1000", "verifyIntegrityPending": "true"}, [], 0)
    progress.update(1.0, {"completedLength": "300", "totalLength": "1000", "verifiedLength": "300"}, [], 10)
    progress.update(
        2.0, {"completedLength": "600", "totalLength": "1000"}, [{"ip": "10.0.0.1", "downloadSpeed": "9"}], 400
    )
    progress.update(3.0, {"completedLength": "1000", "totalLength": "1000"}, [], 900)
    assert progress.result()["bytes"] == 700
    assert (progress.from_source, progress.from_peers) == (700.0, 0.0)


def test_a_check_that_ended_between_two_polls_is_counted_as_held_however_fast_the_link():
    """As seen on a unit resuming a download cut at 56%: 0% at one poll, 56% at the next. What the link received
    between them bounds what arrived, whatever speeds aria2 reported."""
    mb = 1000000
    progress = Progress("10.0.0.1")
    total = {"totalLength": str(300 * mb)}
    progress.update(0.0, {**total, "completedLength": "0", "downloadSpeed": "0"}, [], 7 * mb)
    fast = {**total, "downloadSpeed": str(900 * mb)}
    progress.update(2.0, {**fast, "completedLength": str(168 * mb)}, [], 7 * mb + 50000)
    progress.update(
        3.0, {**fast, "completedLength": str(250 * mb)}, [{"ip": "10.0.0.3", "downloadSpeed": "5"}], 92 * mb
    )
    progress.update(4.0, {**fast, "completedLength": str(300 * mb)}, [], 150 * mb)
    assert progress.result()["bytes"] == 132 * mb + 50000
    assert progress.from_peers == 132 * mb + 50000
    assert progress.from_source == 0.0
