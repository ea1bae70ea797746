# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""A service's container kept, stopped, as NAME-previous while its replacement is gated; put back, or dropped: the
engine of the container_previous module. The kept container is the record of what ran (image, command, environment,
mounts, labels, all as Docker holds them), so a rollback cannot apply the refused settings again; the files it
reads (its config) are kept beside it as PATH-previous, copied; the folders its replacement must not write to (a
data folder of another major version) are moved aside as PATH-previous, an empty one of the same mode and owner
made in their place."""

from __future__ import annotations

import os
import shutil
from urllib.parse import quote

SUFFIX = "-previous"


def previous_name(name):
    return name + SUFFIX


def _state(info):
    """'absent', 'running' or 'stopped', as a container's inspection says."""
    if info is None:
        return "absent"
    return "running" if (info.get("State") or {}).get("Running") else "stopped"


def read(engine, name, files, folders=()):
    """The container, its kept one, the files and folders and their kept copies as they stand."""
    paths = (*files, *folders)
    return dict(
        current=engine.inspect("containers", name),
        previous=engine.inspect("containers", previous_name(name)),
        present={path: os.path.exists(path) for path in paths},
        files={path: os.path.exists(path + SUFFIX) for path in paths},
    )


def plan(found, name, state, files, folders=()):
    """The steps that bring `found` (read()) to `state`, in order; pure. Each step is (verb, argument):
    stop/remove/start a container by name, rename (old, new), keep/restore/drop a file, set-aside/put-back/clear a
    folder. NAME-previous is made before a folder is set aside, put back after it and removed before it is cleared:
    a run cut off between two steps leaves NAME-previous wherever a folder was set aside and not yet cleared, and a
    folder set aside is never lost."""
    current, previous = found["current"], found["previous"]
    kept = previous_name(name)
    steps = []
    if state == "kept":
        # One set aside already is data nobody has put back: never removed, and nothing is done.
        for path in folders:
            if found["files"][path]:
                raise FileExistsError(
                    f"{path}{SUFFIX} exists already, set aside by an earlier run and neither put back nor dropped: "
                    f"move it away (it may hold the only copy of data) before running again"
                )
        # Nothing runs to keep (a first start, or a run cut off after keeping): a kept one stays the record.
        if current is None:
            return steps
        if _state(current) == "running":
            steps.append(("stop", name))
        if previous is not None:
            steps.append(("remove", kept))
        steps.append(("rename", (name, kept)))
        steps += [("keep", path) for path in files if found["present"][path]]
        steps += [("set-aside", path) for path in folders if found["present"][path]]
    elif state == "restored":
        if previous is None:
            return steps
        if current is not None:
            steps.append(("remove", name))
        steps += [("put-back", path) for path in folders if found["files"][path]]
        steps.append(("rename", (kept, name)))
        steps += [("restore", path) for path in files if found["files"][path]]
        steps.append(("start", name))
    elif state == "dropped":
        if previous is not None:
            steps.append(("remove", kept))
        steps += [("drop", path) for path in files if found["files"][path]]
        steps += [("clear", path) for path in folders if found["files"][path]]
    return steps


def act(engine, steps, stop_timeout):
    for verb, argument in steps:
        if verb == "stop":
            engine.request("POST", f"/containers/{quote(argument, safe='')}/stop?t={int(stop_timeout)}")
        elif verb == "remove":
            engine.request("DELETE", f"/containers/{quote(argument, safe='')}?force=true")
        elif verb == "rename":
            old, new = argument
            engine.request("POST", f"/containers/{quote(old, safe='')}/rename?name={quote(new, safe='')}")
        elif verb == "start":
            engine.request("POST", f"/containers/{quote(argument, safe='')}/start")
        elif verb == "keep":
            shutil.copy2(argument, argument + SUFFIX)
        elif verb == "restore":
            os.replace(argument + SUFFIX, argument)
        elif verb == "drop":
            os.unlink(argument + SUFFIX)
        elif verb == "set-aside":
            _set_aside(argument)
        elif verb == "put-back":
            shutil.rmtree(argument, ignore_errors=True)
            os.rename(argument + SUFFIX, argument)
        elif verb == "clear":
            shutil.rmtree(argument + SUFFIX)


def _set_aside(path):
    """Move the folder to PATH-previous and make an empty one in its place, of the same mode and owner."""
    status = os.stat(path)
    os.rename(path, path + SUFFIX)
    os.mkdir(path, status.st_mode & 0o7777)
    os.chmod(path, status.st_mode & 0o7777)
    os.chown(path, status.st_uid, status.st_gid)


def standing(found):
    """found (read()) as states: the container and its kept one absent/running/stopped, each file's kept copy."""
    return {"current": _state(found["current"]), "previous": _state(found["previous"]), "files": dict(found["files"])}


def applied(stands, steps, name):
    """standing() as it will be once `steps` have run: the diff's after, in check mode too."""
    stands = {**stands, "files": dict(stands["files"])}
    for verb, argument in steps:
        if verb == "stop":
            stands["current"] = "stopped"
        elif verb == "remove":
            stands["previous" if argument == previous_name(name) else "current"] = "absent"
        elif verb == "rename":
            towards_kept = argument[0] == name
            stands["previous" if towards_kept else "current"] = stands["current" if towards_kept else "previous"]
            stands["current" if towards_kept else "previous"] = "absent"
        elif verb == "start":
            stands["current"] = "running"
        else:
            stands["files"][argument] = verb in ("keep", "set-aside")
    return stands


def render(stands, name):
    """One line for each container and file, for the diff."""
    lines = [f"{name}: {stands['current']}", f"{previous_name(name)}: {stands['previous']}"]
    lines += [f"{path}{SUFFIX}: {'present' if there else 'absent'}" for path, there in stands["files"].items()]
    return "".join(line + "\n" for line in lines)
