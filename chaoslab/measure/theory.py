"""What VRRP theory predicts: the window a client outage should fall in, per fault scenario.

The formulas are those of DESIGN.md, "Failover timing":

- master down interval = 3 x advert_int + skew, with the priority of the backup that takes
  over; skew = (256 - priority) / 256 s in VRRPv2 (RFC 3768), (256 - priority) x advert_int / 256
  in VRRPv3 (RFC 5798), as Keepalived computes it (VRRP_TIMER_SKEW);
- a master that leaves gracefully (keepalived stop, or a failed track check that puts it
  in FAULT) sends a priority-0 advert, so the backup takes over after its skew time alone;
- a dead HAProxy is only noticed by the track check, whose interval adds to the outage;
- a frozen HAProxy keeps its pid, so a pid-based track script never notices it; a checker
  that asks HAProxy over HTTP notices, each failed probe lasting its timeout.

Pure functions of a profile's merged settings dict; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SCENARIOS", "Prediction", "expected_outage", "master_down_interval", "skew_time"]

#: Scenarios with a prediction, and what each breaks.
SCENARIOS: dict[str, str] = {
    "halt-master": "the VRRP master halts: no more adverts, no priority-0 advert",
    "keepalived-crash": "keepalived on the master is killed: the VIP stays on its interface, adverts stop",
    "keepalived-stop": "keepalived on the master stops gracefully: it sends a priority-0 advert",
    "haproxy-stop": "HAProxy on the master is stopped: the track check must notice",
    "haproxy-kill": "HAProxy on the master is killed: the track check must notice",
    "haproxy-freeze": "HAProxy on the master is frozen (SIGSTOP): it keeps its pid",
    "backend-down": "one web server is down: HAProxy's health check must notice",
    "haproxy-reload": "HAProxy on the master reloads its configuration (systemctl reload, or -sf): a new process "
                      "takes over the listening sockets",
    "haproxy-restart": "HAProxy on the master is stopped and started again",
    "vrrp-blocked": "a firewall on one load balancer drops the VRRP adverts it receives",
    "one-way-partition": "one load balancer's packets no longer reach the other; the other way still works",
    "failback": "the old master comes back and may preempt",
    "split-brain": "the load balancers cannot hear each other",
    "slow-link": "adverts are delayed or lost on a slow link",
}

EVEN_SPREAD = {"roundrobin", "static-rr"}  # balance algorithms that spread one client's requests evenly
MAX_PRIORITY = 254  # a priority a track weight raises stops there (255 is the address owner's)
# track mechanisms whose timing is not chaoslab's to know (configs imported from a user's pair)
UNTIMED_TRACKS = {
    "none": "nothing tracks HAProxy: a dead HAProxy on the master never moves the VIP (never recovers)",
    "external": ("Keepalived tracks a file another process writes: how soon it notices a dead HAProxy is "
                 "not in the configs; no single prediction"),
}

_NO_SINGLE_PREDICTION = {
    "failback": (
        "failback: the returning master preempts the backup; what clients see depends on preempt_delay "
        "and gratuitous ARP timing; no single prediction"
    ),
    "split-brain": (
        "split brain: both nodes may become MASTER and hold the VIP; what clients see depends on their "
        "ARP caches; no single prediction"
    ),
    "haproxy-restart": (
        "HAProxy restart: new connections are refused for as long as HAProxy takes to stop and start, which "
        "no setting fixes; the track check notices only if that is longer than its fall - 1 intervals; "
        "no single prediction"
    ),
    "vrrp-blocked": (
        "VRRP blocked on one node: a backup that hears no adverts becomes MASTER after its master down "
        "interval while the master holds on (split brain); what clients see depends on their ARP caches; "
        "no single prediction"
    ),
    "one-way-partition": (
        "one-way partition: the side that stops hearing the other becomes MASTER after its master down "
        "interval; whether clients notice depends on which way is cut; no single prediction"
    ),
    "slow-link": (
        "slow link: delayed or lost adverts may or may not exceed the master down interval, depending on "
        "the delay and loss; no single prediction"
    ),
}


@dataclass(frozen=True)
class Prediction:
    """The outage a client should see, in seconds: between low and high.

    high is math.inf when theory says the service never recovers, math.nan when
    theory gives no single prediction for the scenario. measures says what the bounds are
    for: "downtime" (the longest outage) or "impact" (the impact window of a partial outage,
    in which failed_share of the requests fail; None: no share predicted).
    """

    scenario: str
    low: float
    high: float
    formula: str
    measures: str = "downtime"
    failed_share: float | None = None

    @property
    def never_recovers(self) -> bool:
        return math.isinf(self.high)

    @property
    def has_bounds(self) -> bool:
        return not math.isnan(self.high)

    def to_json(self) -> dict:
        """Strict JSON: infinite and missing bounds become None, "expect" says which."""
        if not self.has_bounds:
            expect = "no-prediction"
        elif self.never_recovers:
            expect = "no-recovery"
        else:
            expect = "recovery"
        return {
            "scenario": self.scenario,
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "expect": expect,
            "measures": self.measures,
            "failed_share": None if self.failed_share is None else round(self.failed_share, 4),
            "formula": self.formula,
        }


def skew_time(advert_int: float, priority: int, version: int = 3) -> float:
    """VRRP skew time: how long a backup of this priority waits beyond 3 adverts.
    VRRPv2 (RFC 3768) counts it in seconds whatever the advert interval; VRRPv3 scales it."""
    return (256 - priority) / 256 if version == 2 else (256 - priority) * advert_int / 256


def master_down_interval(advert_int: float, priority: int, version: int = 3) -> float:
    """How long a backup of this priority waits without adverts before it becomes master."""
    return 3 * advert_int + skew_time(advert_int, priority, version)


def expected_outage(scenario: str, settings: dict, backup_priority: int, master_priority: int | None = None,
                    preempt: bool = True, webservers: int | None = None) -> Prediction:
    """The client outage VRRP theory predicts for a scenario under a profile's settings.

    settings is a profile's merged settings dict (sections "vrrp", "track", "haproxy");
    backup_priority is the VRRP priority of the node expected to take over, master_priority the
    master's (needed where a track check lowers it by a weight instead of putting it in FAULT),
    preempt False under Keepalived's nopreempt, webservers the number of servers HAProxy balances
    over (for the share of requests a dead one fails; None: not known).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known scenarios: {', '.join(SCENARIOS)}")
    if scenario in _NO_SINGLE_PREDICTION:
        return Prediction(scenario, 0.0, math.nan, _NO_SINGLE_PREDICTION[scenario])
    if scenario == "backend-down":
        return _backend_down(settings, webservers)
    if scenario == "haproxy-reload":
        return Prediction(scenario, 0.0, 0.0,
                          "a reload starts a new HAProxy that takes over the listening sockets before the old one "
                          "stops listening: no new connection is refused, no outage; the old process finishes the "
                          "requests in flight and closes its idle keep-alive connections")
    advert = float(_setting(settings, "vrrp", "advert_int"))
    version = int(_setting(settings, "vrrp", "version"))
    if scenario == "halt-master":
        return _silent_master(scenario, advert, backup_priority, version)
    if scenario == "keepalived-crash":
        mdi = master_down_interval(advert, backup_priority, version)
        return Prediction(
            scenario,
            0.0,
            0.0,
            "Keepalived dies but the VIP stays on the master's interface and its HAProxy serves on: "
            f"no outage; the backup still takes the VIP after the master down interval {mdi:.2f} s, "
            "and two nodes hold it until the old master's Keepalived returns",
        )
    if scenario == "keepalived-stop":
        return _graceful_stop(scenario, advert, backup_priority, version)
    if scenario == "haproxy-freeze" and _setting(settings, "track", "mechanism") == "script":
        if settings["track"].get("probe", "process") != "process":
            return Prediction(scenario, 0.0, math.nan,
                              "a frozen HAProxy against a track script that does not just look for its process: "
                              "whether and when the script notices depends on what it asks; no single prediction")
        return Prediction(
            scenario,
            math.inf,
            math.inf,
            "a frozen HAProxy keeps its pid, so the pid-based track script keeps passing: "
            "the VIP stays on a node that serves nobody (never recovers)",
        )
    mechanism = _setting(settings, "track", "mechanism")
    if mechanism in UNTIMED_TRACKS:
        never = math.inf if mechanism == "none" else math.nan
        return Prediction(scenario, 0.0 if math.isnan(never) else never, never, UNTIMED_TRACKS[mechanism])
    if int(settings["track"].get("weight") or 0):
        return _weighted_track(scenario, settings, advert, backup_priority, master_priority, preempt, version)
    return _tracked_haproxy(scenario, settings, advert, backup_priority, version)


def _silent_master(scenario: str, advert: float, priority: int, version: int) -> Prediction:
    """No more adverts: the backup waits the master down interval from the last advert it got."""
    mdi = master_down_interval(advert, priority, version)
    formula = (
        f"master down interval 3 x {_num(advert)} s + {_skew_text(advert, priority, version)} = {mdi:.2f} s, "
        f"counted from the last advert: outage {mdi - advert:.2f}-{mdi:.2f} s"
    )
    return Prediction(scenario, mdi - advert, mdi, formula)


def _graceful_stop(scenario: str, advert: float, priority: int, version: int) -> Prediction:
    """A priority-0 advert: the backup takes over after its skew time (RFC 3768 6.4.2, RFC 5798 6.4.2:
    Master_Down_Timer set to Skew_Time), not at once; the old master gave up the VIP when it left."""
    skew = skew_time(advert, priority, version)
    formula = (f"priority-0 advert: the backup takes over after its skew {_skew_text(advert, priority, version)} "
               f"= {skew:.2f} s: outage about {skew:.2f} s")
    return Prediction(scenario, skew, skew, formula)


def _tracked_haproxy(scenario: str, settings: dict, advert: float, priority: int, version: int) -> Prediction:
    """The track check notices after fall failed checks (the first of them up to one interval after the
    fault), then FAULT sends a priority-0 advert and the backup waits its skew: both bounds include it.
    A frozen HAProxy fails a probe only when the probe's timeout (timeout_ms, where the
    checker has one) runs out, so the last failed probe ends that much later."""
    interval, fall, checker = _track_check(settings)
    wait = float(settings["track"].get("timeout_ms", 0)) / 1000 if scenario == "haproxy-freeze" else 0.0
    detect_low, detect_high = (fall - 1) * interval + wait, fall * interval + wait
    skew = skew_time(advert, priority, version)
    low, high = detect_low + skew, detect_high + skew
    timed_out = f" (each failed probe waits its {_num(wait)} s timeout)" if wait else ""
    formula = (
        f"{checker} every {_num(interval)} s, fall {fall}{timed_out}: "
        f"detected after {detect_low:.2f}-{detect_high:.2f} s, "
        f"then FAULT sends a priority-0 advert and the backup waits its skew "
        f"{_skew_text(advert, priority, version)} = {skew:.2f} s: outage {low:.2f}-{high:.2f} s"
    )
    return Prediction(scenario, low, high, formula)


def _weighted_track(scenario: str, settings: dict, advert: float, backup: int, master: int | None, preempt: bool,
                    version: int) -> Prediction:
    """A check with a weight changes the priority instead of putting the node in FAULT: a negative
    weight is taken off while the check fails, a positive one is added while it passes (both nodes
    track alike). The VIP moves only if the failing master ends below the healthy backup and the
    backup may preempt. A preempting backup discards adverts of a lower priority (RFC 3768 6.4.2,
    RFC 5798 6.4.2) and takes over when its master down timer runs out, counted from the last advert
    of the old priority: up to one advert interval before detection."""
    weight = int(settings["track"]["weight"])
    interval, fall, checker = _track_check(settings)
    if master is None:
        raise ValueError("a track check with a weight needs the master's priority for a prediction")
    healthy, failing = min(MAX_PRIORITY, master + max(weight, 0)), master + min(weight, 0)
    backup = min(MAX_PRIORITY, backup + max(weight, 0))
    drop = f"the master's priority drops from {healthy} to {failing}"
    if failing >= backup or not preempt:
        why = (f"{drop}, not below the backup's {backup}" if failing >= backup
               else f"nopreempt: the backup ({backup}) never preempts a live master")
        return Prediction(scenario, math.inf, math.inf,
                          f"{checker} with weight {weight}: {why}: a dead HAProxy never moves the VIP (never recovers)")
    detect_low, detect_high = (fall - 1) * interval, fall * interval
    mdi = master_down_interval(advert, backup, version)
    low, high = detect_low + mdi - advert, detect_high + mdi
    formula = (f"{checker} every {_num(interval)} s, fall {fall}, weight {weight}: detected after "
               f"{detect_low:.2f}-{detect_high:.2f} s, {drop}, below the backup's {backup}, which discards the "
               f"lower adverts and takes over when its master down interval 3 x {_num(advert)} s + "
               f"{_skew_text(advert, backup, version)} = {mdi:.2f} s runs out, counted from the last advert "
               f"before: outage {low:.2f}-{high:.2f} s")
    return Prediction(scenario, low, high, formula)


def _track_check(settings: dict) -> tuple[float, int, str]:
    """(check interval in seconds, fall count, description) of the keepalived track."""
    mechanism = _setting(settings, "track", "mechanism")
    fall = int(_setting(settings, "track", "fall"))
    if mechanism == "script":
        return float(_setting(settings, "track", "interval")), fall, "track script"
    if mechanism == "file":
        interval = float(_setting(settings, "track", "check_interval_ms")) / 1000
        return interval, fall, "external check feeding a track file"
    raise ValueError(f"track mechanism {mechanism!r} is unknown; use 'script' or 'file'")


def _backend_down(settings: dict, webservers: int | None) -> Prediction:
    """Without redispatch, requests HAProxy sends to the dead server fail until its health check marks
    it down: the first failed check comes within one `inter` of the stop, then fall - 1 more (HAProxy
    checks a server that is going down every `fastinter`, which is `inter` unless set). Meanwhile
    the balance algorithm sends it its share of the requests: 1/n of them under an even spread
    over n servers of equal weight; no share where a client's requests all land on one server."""
    if _setting(settings, "haproxy", "redispatch"):
        return Prediction(
            "backend-down", 0.0, 0.0,
            "option redispatch retries a failed request on the other web server: no client failure expected",
            measures="impact", failed_share=0.0)
    inter = float(_setting(settings, "haproxy", "check_inter_ms")) / 1000
    fall = int(_setting(settings, "haproxy", "check_fall"))
    balance = str(settings["haproxy"].get("balance", "roundrobin")).split()[0]
    low, high = (fall - 1) * inter, fall * inter
    share = 1 / webservers if webservers and balance in EVEN_SPREAD else None
    spread = (f"{balance} over {webservers} web servers sends it 1/{webservers} of the requests" if share is not None
              else f"balance {balance} over {webservers or 'an unknown number of'} web servers: no single share")
    formula = (f"no redispatch: requests sent to the dead web server fail until HAProxy's check marks it down, "
               f"the first failed check within {_num(inter)} s of the stop, then {fall - 1} more every "
               f"{_num(inter)} s: after {low:.2f}-{high:.2f} s; meanwhile {spread}: impact window "
               f"{low:.2f}-{high:.2f} s" + (f" with {share:.0%} of its requests failed" if share is not None else ""))
    return Prediction("backend-down", low, high, formula, measures="impact", failed_share=share)


def _setting(settings: dict, section: str, key: str):
    try:
        return settings[section][key]
    except (KeyError, TypeError):
        raise ValueError(f"settings lack {section}.{key}, needed for this prediction") from None


def _skew_text(advert: float, priority: int, version: int) -> str:
    return f"(256-{priority})/256 s" if version == 2 else f"(256-{priority}) x {_num(advert)}/256 s"


def _num(value: float) -> str:
    return f"{value:g}"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
