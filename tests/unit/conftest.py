"""The collection importable as Ansible imports it.

`make collection` links this checkout in as .collections/ansible_collections/thorfleet/llm. When the link is
missing (a bare `pytest tests/unit`), a temporary one is made, so the tests never depend on a make target.
"""

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _collections_root() -> Path:
    linked = REPO / ".collections"
    if (linked / "ansible_collections" / "thorfleet" / "llm").resolve() == REPO:
        return linked
    root = Path(tempfile.mkdtemp(prefix="thorfleet-collections-"))
    atexit.register(shutil.rmtree, root, True)
    (root / "ansible_collections" / "thorfleet").mkdir(parents=True)
    (root / "ansible_collections" / "thorfleet" / "llm").symlink_to(REPO, target_is_directory=True)
    return root


sys.path.insert(0, str(_collections_root()))
