"""The thorfleet simulator: Jetson AGX Thor units as systemd containers with their own Docker engine."""

from pathlib import Path

SIM_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = SIM_DIR.parent
CACHE_DIR = SIM_DIR / ".cache"
ARCHIVE_DIR = CACHE_DIR / "archives"

# Every resource the simulator creates carries LABEL, so that it can be found and removed again.
LABEL = "org.thorfleet.sim"
LABEL_FLEET = f"{LABEL}.fleet"
LABEL_EPHEMERAL = f"{LABEL}.ephemeral"
LABEL_INPUTS = f"{LABEL}.inputs"
