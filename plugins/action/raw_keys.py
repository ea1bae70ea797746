# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""raw_keys: the controller's store of raw LiteLLM keys; documented in plugins/modules/raw_keys.py.

An action plugin, so that it runs on the controller whatever host the task targets. The engine is plain
functions below (read, make, write under a lock), tested without Ansible's task machinery.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import string
import tempfile
from dataclasses import dataclass

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC = {
    "path": {"type": "path"},
    "names": {"type": "list", "elements": "str", "required": True},
    "create": {"type": "bool", "default": True},
}
# Reading a store needs one.
REQUIRED_IF = [("create", False, ["path"])]

KEY_ALPHABET = string.ascii_letters + string.digits
KEY_LENGTH = 40
FOLDER_MODE = 0o700
STORE_MODE = 0o600


class StoreError(Exception):
    """The store cannot be used as it is; the message names the file and what to do."""


@dataclass
class Outcome:
    keys: dict[str, str]  # the raw key of every name asked for (all of them unless create is false)
    before: list[str]  # names in the store before
    after: list[str]  # names in the store after (would be, in check mode)
    changed: bool


def make_key() -> str:
    """A new raw LiteLLM key: the one place the collection makes them."""
    return "sk-" + "".join(secrets.choice(KEY_ALPHABET) for _position in range(KEY_LENGTH))


def read_store(path: str) -> dict[str, str]:
    """The store's names and raw keys; an absent or empty file is an empty store."""
    remedy = (
        "it must be a YAML mapping of key names to raw keys ('alice: sk-...'): fix it or restore it from a backup "
        "(moving it away makes every key anew, and the old ones must then be replaced wherever they are used)"
    )
    try:
        with open(path, encoding="utf-8") as stream:
            store = yaml.safe_load(stream)
    except FileNotFoundError:
        return {}
    except yaml.YAMLError as error:
        raise StoreError(f"The key store {path} is not valid YAML ({error}); {remedy}") from error
    if store is None:
        return {}
    if not isinstance(store, dict):
        raise StoreError(f"The key store {path} holds a {type(store).__name__}; {remedy}")
    wrong = [repr(name) for name, key in store.items() if not isinstance(name, str) or not isinstance(key, str)]
    if wrong:
        raise StoreError(f"The key store {path} has entries that are not strings ({', '.join(wrong)}); {remedy}")
    return store


def write_store(path: str, store: dict[str, str]) -> None:
    """Write the whole store at once: a temporary file beside it, replacing it only when complete."""
    # mkstemp makes the file 0600, and in the same folder os.replace is atomic: a reader, or a crash,
    # sees the old store or the new one, never part of one.
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            yaml.safe_dump(store, stream, default_flow_style=False, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def locked(path: str):
    """One caller at a time between reading the store and writing it (hosts of a play run in parallel)."""
    lock = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, STORE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _loose(path: str, mode: int) -> bool:
    """Whether `path` exists with a mode other than `mode`."""
    try:
        return os.stat(path).st_mode & 0o777 != mode
    except FileNotFoundError:
        return False


def fresh_keys(names: list[str]) -> Outcome:
    """New keys kept nowhere (temporary keys, deleted after use)."""
    return Outcome(keys={name: make_key() for name in names}, before=[], after=[], changed=False)


def stored_keys(path: str, names: list[str]) -> Outcome:
    """The keys the store has for `names`; the others are left out. Reads only."""
    store = read_store(path)
    return Outcome({name: store[name] for name in names if name in store}, sorted(store), sorted(store), False)


def keep_keys(path: str, names: list[str], check: bool = False) -> Outcome:
    """The keys of `names`, each made once and kept in the store at `path` with every other name in it."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    new_folder = not os.path.isdir(folder)
    if not check:
        os.makedirs(folder, mode=FOLDER_MODE, exist_ok=True)
    tighten = [(p, mode) for p, mode in ((folder, FOLDER_MODE), (path, STORE_MODE)) if _loose(p, mode)]
    store = read_store(path)
    made = {name: make_key() for name in names if name not in store}
    if made and not check:
        with locked(path):
            # Read again under the lock: another caller may have made some of them since.
            store = read_store(path)
            made = {name: key for name, key in made.items() if name not in store}
            if made:
                write_store(path, {**store, **made})
    if not check:
        for p, mode in tighten:
            os.chmod(p, mode)
    after = {**store, **made}
    changed = bool(made or tighten or new_folder)
    return Outcome({name: after[name] for name in names}, sorted(store), sorted(after), changed)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    # Works on the controller's files alone: the target host is never contacted.
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self.validate_argument_spec(ARGUMENT_SPEC, required_if=REQUIRED_IF)[1]
        # Plain strings: names carry Ansible's data tags, which a YAML dump cannot represent.
        path, names = args["path"], [str(name) for name in args["names"]]
        try:
            if path is None:
                outcome = fresh_keys(names)
            elif args["create"]:
                outcome = keep_keys(path, names, check=self._task.check_mode)
            else:
                outcome = stored_keys(path, names)
        except (StoreError, OSError) as error:
            raise AnsibleActionFail(str(error)) from error
        result.update(changed=outcome.changed, keys=outcome.keys)
        if self._task.diff and outcome.after != outcome.before:
            # Names only: the keys never reach a diff.
            result["diff"] = {
                "before_header": path,
                "after_header": path,
                "before": "".join(f"{name}\n" for name in outcome.before),
                "after": "".join(f"{name}\n" for name in outcome.after),
            }
        return result
