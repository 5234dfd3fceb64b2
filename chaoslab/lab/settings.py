"""The lab's parameters: which provider, profile and prefix, the VRRP password, the hosts; from an
experiment's configuration, overridden by CHAOSLAB_* environment variables."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from chaoslab.errors import ChaoslabError

DEFAULT_PROVIDER = "netns"
DEFAULT_PREFIX = "chaoslab"
PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")
PASSWORD_PATTERN = re.compile(r"""^[^\s"'#!]{1,8}$""")
PASSWORD_ENV = "CHAOSLAB_VRRP_PASSWORD"
LAB_PASSWORD = "chaoslab"
# configuration key -> environment variable that overrides it
SETTINGS = {
    "chaoslab_provider": "CHAOSLAB_PROVIDER",
    "chaoslab_profile": "CHAOSLAB_PROFILE",
    "chaoslab_prefix": "CHAOSLAB_PREFIX",
    "chaoslab_inventory": "CHAOSLAB_INVENTORY",
    "chaoslab_confirm_hosts": "CHAOSLAB_CONFIRM_HOSTS",
    "chaoslab_sampler_interval": "CHAOSLAB_SAMPLER_INTERVAL",
}


@dataclass(frozen=True)
class LabSettings:
    provider: str = DEFAULT_PROVIDER
    profile: str | None = None
    prefix: str = DEFAULT_PREFIX
    vrrp_password: str = field(default=LAB_PASSWORD, repr=False)  # never in a log or a journal
    inventory: str | None = None  # the ssh provider's hosts
    confirm_hosts: bool = False  # faults on hosts that are not the lab's own are meant
    sampler_interval: float | None = None  # seconds between the sampler's requests; None: the provider's
    configs: str | None = None  # a rehearsal's: the pair's own configs, DIR/<node>/keepalived|haproxy (netns lab)

    @classmethod
    def resolve(cls, configuration: Mapping | None = None, secrets: Mapping | None = None) -> LabSettings:
        """The experiment's configuration, overridden by CHAOSLAB_* environment variables;
        the VRRP password from $CHAOSLAB_VRRP_PASSWORD or the experiment's secrets
        ({"chaoslab": {"vrrp_password": ...}}), the lab's default otherwise."""
        values = {key: configured(configuration, key, variable) for key, variable in SETTINGS.items()}
        password = os.environ.get(PASSWORD_ENV) or ((secrets or {}).get("chaoslab") or {}).get("vrrp_password")
        return cls(
            provider=values["chaoslab_provider"] or DEFAULT_PROVIDER,
            profile=values["chaoslab_profile"] or None,
            prefix=values["chaoslab_prefix"] or DEFAULT_PREFIX,
            vrrp_password=password or LAB_PASSWORD,
            inventory=values["chaoslab_inventory"] or None,
            confirm_hosts=str(values["chaoslab_confirm_hosts"] or "").lower() in ("1", "true", "yes"),
            sampler_interval=parse_interval(values["chaoslab_sampler_interval"]),
        )


def configured(configuration: Mapping | None, key: str, variable: str) -> object:
    """A chaoslab setting: the environment variable if it is set, else the experiment's configuration key."""
    return os.environ.get(variable) or (configuration or {}).get(key)


def parse_interval(value: object) -> float | None:
    """A sampler interval in seconds from configuration or environment (None if unset)."""
    if value in (None, ""):
        return None
    try:
        interval = float(value)
    except ValueError:
        interval = -1.0
    if not 0.001 <= interval <= 1:
        raise ChaoslabError(f"chaoslab_sampler_interval must be seconds within 0.001..1, not {value!r}")
    return interval
