#!/usr/bin/python
# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION, EXAMPLES and RETURN before the imports

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cache_torrent
short_description: A private torrent of the model cache's regular files, on the cache source
version_added: 0.2.0
author: thorfleet.llm developers (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
description:
  - Makes, in O(workdir), a folder of links named after the torrent, one for each regular file of O(manifest) at
    its manifest key (C(TREE/relative/path)) pointing at the file in O(trees), and a private torrent of that folder
    with C(mktorrent), with a piece length chosen from the payload (about 1500 pieces, 256 KiB to 16 MiB).
  - The torrent's name follows the manifest's content, so a torrent made for other content is never reused; the
    folder and torrent of an earlier manifest are removed. Links (HF snapshots) are not in the torrent.
  - A torrent already made for this manifest is not made again (C(mktorrent) reads every byte).
attributes:
  check_mode:
    support: full
    details:
      - Changes nothing; reports what would change. Where the torrent is not made yet, RV(info_hash) is empty.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  trees:
    description:
      - The cache source's folders by name, as for M(thorfleet.llm.cache_tree).
    type: dict
    required: true
  manifest:
    description:
      - The source's manifest, as M(thorfleet.llm.cache_tree) returned it.
    type: dict
    required: true
  workdir:
    description:
      - Folder for the links and the torrent; made when missing.
    type: path
    required: true
  announce:
    description:
      - The tracker's announce URL written into the torrent.
    type: str
    required: true
notes:
  - Needs C(mktorrent) on the host.
"""

EXAMPLES = r"""
- name: A torrent of the source's copy
  thorfleet.llm.cache_torrent:
    trees:
      huggingface: /srv/thorfleet/data/models/huggingface
      vllm_cache: /srv/thorfleet/data/vllm_cache
    manifest: "{{ source_tree.manifest }}"
    workdir: /var/lib/thorfleet/model_cache/torrent
    announce: http://10.0.0.1:6969/announce
  register: cache_torrent
"""

RETURN = r"""
torrent:
  description: The .torrent's path on the host.
  type: str
  returned: always
name:
  description: The torrent's name, and its folder's in O(workdir).
  type: str
  returned: always
info_hash:
  description: The torrent's info hash, hex (empty in check mode where it is not made yet).
  type: str
  returned: always
piece_length:
  description: Bytes per piece.
  type: int
  returned: always
files:
  description: The torrent's files in its order, each as [manifest key, size] (what aria2's file indexes count).
  type: list
  elements: list
  returned: always
bytes:
  description: The payload's size.
  type: int
  returned: always
steps:
  description: What was done (would be, in check mode), one line each.
  type: list
  elements: str
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_type_path
from ansible_collections.thorfleet.llm.plugins.module_utils._cache_torrent import (
    BencodeError,
    act,
    made,
    name,
    payload,
    piece_log2,
    plan,
    read,
    torrent_path,
)


def argument_spec():
    return dict(
        trees=dict(type="dict", required=True),
        manifest=dict(type="dict", required=True),
        workdir=dict(type="path", required=True),
        announce=dict(type="str", required=True),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    trees = {tree: check_type_path(path) for tree, path in p["trees"].items()}
    manifest, workdir = p["manifest"], p["workdir"]
    files, total = payload(manifest)
    log2 = piece_log2(total)

    def make(path):
        partial = path + ".partial"
        if os.path.exists(partial):
            os.remove(partial)
        argv = [module.get_bin_path("mktorrent", required=True), "-p", "-l", str(log2), "-a", p["announce"]]
        argv += ["-n", name(manifest), "-o", partial, os.path.join(workdir, name(manifest))]
        rc, _out, err = module.run_command(argv)
        if rc != 0:
            module.fail_json(msg=f"mktorrent failed ({rc}): {err.strip()[-500:]}", rc=rc)
        os.replace(partial, path)

    try:
        found = read(workdir, manifest, trees)
        steps = plan(found, workdir, manifest, trees)
        if steps and not module.check_mode:
            os.makedirs(workdir, mode=0o755, exist_ok=True)
            act(steps, make)
        meta = made(workdir, manifest)
    except (OSError, BencodeError) as exc:
        module.fail_json(msg=f"{workdir}: {exc}")
    module.exit_json(
        changed=bool(steps),
        steps=[" ".join([verb, *(arg if isinstance(arg, tuple) else [arg])]) for verb, arg in steps],
        torrent=torrent_path(workdir, manifest),
        name=name(manifest),
        info_hash=meta["info_hash"] if meta else "",
        piece_length=meta["piece_length"] if meta else 1 << log2,
        files=[list(f) for f in (meta["files"] if meta else files)],
        bytes=total,
    )


if __name__ == "__main__":
    main()
