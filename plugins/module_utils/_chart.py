# Copyright: thorfleet.llm developers
# Apache License 2.0 (see galaxy.yml)
"""What the chart modules share: a figure as PNG bytes that depend on the data alone, written only where it differs."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import traceback

from ansible.module_utils.basic import missing_required_lib

try:
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot

    MATPLOTLIB_ERROR = None
except ImportError:
    pyplot = None
    MATPLOTLIB_ERROR = traceback.format_exc()


def chart_spec(title: str) -> dict:
    """A chart module's options: its rows, its title (default `title`), and what doc_fragments/chart.py documents."""
    return dict(
        rows=dict(type="list", elements="dict", required=True),
        title=dict(type="str", default=title),
        path=dict(type="path", required=True),
        note=dict(type="str", default=""),
        mode=dict(type="raw", default="0644"),
    )


def run_chart(module, refuse, draw) -> None:
    """A chart module's main, given its AnsibleModule: `refuse(rows)` says what is wrong with the rows (or None);
    `draw(rows, title, note)` gives (PNG bytes, bars); the file is written where it differs, and the module exits
    with changed, path, bars."""
    if MATPLOTLIB_ERROR:
        module.fail_json(msg=missing_required_lib("matplotlib"), exception=MATPLOTLIB_ERROR)
    params = module.params
    problem = refuse(params["rows"])
    if problem:
        module.fail_json(msg=problem)
    png, bars = draw(params["rows"], params["title"], params["note"])
    changed = write_png(module, png, params["path"], params["mode"])
    module.exit_json(changed=changed, path=params["path"], bars=bars)


def png_of(figure) -> bytes:
    """The figure as PNG, then closed. No Software/date metadata: the same data makes the same bytes, so a re-run
    changes nothing."""
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=100, metadata={"Software": None})
    pyplot.close(figure)
    return out.getvalue()


def write_png(module, png: bytes, path: str, mode) -> bool:
    """Write `png` at `path` where the file differs (not in check mode), atomically; set its mode. Whether it
    changed (or would)."""
    try:
        with open(path, "rb") as current:
            changed = hashlib.sha256(current.read()).digest() != hashlib.sha256(png).digest()
    except FileNotFoundError:
        changed = True
    if changed and not module.check_mode:
        folder = os.path.dirname(os.path.abspath(path))
        fd, temporary = tempfile.mkstemp(dir=folder, suffix=".png")
        with os.fdopen(fd, "wb") as out:
            out.write(png)
        module.atomic_move(temporary, path)
    file_args = module.load_file_common_arguments(dict(path=path, mode=mode))
    if not module.check_mode:
        changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed
