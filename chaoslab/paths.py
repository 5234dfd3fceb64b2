"""Where chaoslab's files live: its provisioners, topology and experiments, and its results.

From a checkout (an editable install, the tests) they are the checkout's. An installed wheel
carries them as data files under <prefix>/share/chaoslab (see pyproject.toml); its results go
to results/ in the current directory.
"""

import os
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
INSTALLED = Path(sys.prefix) / "share" / "chaoslab"
FROM_CHECKOUT = (CHECKOUT / "provision" / "topology.json").is_file()
PROJECT_DIR = CHECKOUT if FROM_CHECKOUT else INSTALLED
PROVISION_DIR = PROJECT_DIR / "provision"
TOPOLOGY_FILE = PROVISION_DIR / "topology.json"
EXPERIMENTS_DIR = PROJECT_DIR / "experiments"
STATE_ROOT = Path(os.environ.get("CHAOSLAB_STATE_ROOT", "/run/chaoslab"))


def results_dir() -> Path:
    """The folder runs are written to: $CHAOSLAB_RESULTS, else results/ in the checkout, or in the
    current directory for an installed chaoslab."""
    default = PROJECT_DIR / "results" if FROM_CHECKOUT else Path.cwd() / "results"
    return Path(os.environ.get("CHAOSLAB_RESULTS", default))
