"""Where chaoslab's files live: the project checkout, its provisioners and results."""

import os
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PROVISION_DIR = PROJECT_DIR / "provision"
TOPOLOGY_FILE = PROVISION_DIR / "topology.json"
STATE_ROOT = Path(os.environ.get("CHAOSLAB_STATE_ROOT", "/run/chaoslab"))


def results_dir() -> Path:
    """The folder runs are written to: $CHAOSLAB_RESULTS or results/ in the checkout."""
    return Path(os.environ.get("CHAOSLAB_RESULTS", PROJECT_DIR / "results"))
