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

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.validation import check_type_path
from ansible_collections.thorfleet.llm.plugins.module_utils._cache_tree import (
    HashCache,
    TreeError,
    act,
    plan,
    read,
    totals,
)


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
    try:
        manifest, found = read(trees, p["manifest"], hashes)
        result, steps = plan(manifest, found, p["make_links"], p["source"])
        # Check mode reports the plan: nothing is linked, removed or fetched, and the hashes are not kept.
        if not module.check_mode:
            result = act(module, trees, manifest, hashes, found, result, steps, p["timeout"])
    except TreeError as exc:
        module.fail_json(msg=str(exc), **exc.fields)
    module.exit_json(**result, **totals(manifest, hashes))


if __name__ == "__main__":
    main()
