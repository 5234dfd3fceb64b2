"""The Chaos Toolkit control that turns an experiment into a measured run.

Declared in each experiment:

    "controls": [{"name": "chaoslab", "provider": {"type": "python", "module": "chaoslab.control"}}]

Under `chaos run --dry=actions` (or `--dry=activities`) no fault is injected, and the control
touches nothing either: no lab is brought up, healed or measured (the probes still read the stack
as Chaos Toolkit runs them).

Before the experiment: hold the lab (a second run is refused), bring it up if
needed, heal what a previous run left (Jepsen's habit), wait for the steady
state, open the run's folder, start the event recorder and the sampler, and
arm the safeguard if the run has an abort budget (chaoslab.safeguard).
Before the rollbacks: disarm the safeguard.
After it (rollbacks done, or the run interrupted or failed): heal the lab,
wait for the steady state, stop the instruments, write the summary, charts, JUnit XML and
Prometheus metrics, put the numbers in the journal (its "chaoslab" extension, which `chaos run`
writes to its journal file), record the run in the history (chaoslab.measure.history), and bring
the lab down only if this run brought it up.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import click
from chaoslib.types import Configuration, Dry, Experiment, Journal, Secrets

from chaoslab import safeguard
from chaoslab.checks import check_experiment
from chaoslab.commands import stop
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import HealIncomplete, Lab
from chaoslab.lab.settings import configured
from chaoslab.lab.topology import Topology
from chaoslab.measure import analysis, history, junit, metrics, theory
from chaoslab.measure.events import EventRecorder
from chaoslab.measure.load import MAX_CLIENTS, STOP_GRACE
from chaoslab.measure.load_analysis import load_records, summarize_load
from chaoslab.measure.results import CHART, EVENTS, JOURNAL, LOAD, SAMPLES, SUMMARY, create_run_dir, write_json
from chaoslab.paths import PROJECT_DIR

logger = logging.getLogger("chaostoolkit")

SAMPLER_TIMEOUT = 1.0
SAMPLER_MAX_DURATION = 900.0
SETTLE_AFTER = 0.5
NO_ROLLBACKS = 30  # chaoslib.exit: SystemExit(30) ends a run without its rollbacks
UNTOUCHED = (Dry.ACTIONS, Dry.ACTIVITIES)  # dry runs that inject nothing: the control touches nothing either
JUNIT = "junit.xml"
LOAD_CLIENTS_KEY, LOAD_CLIENTS_ENV = "chaoslab_load_clients", "CHAOSLAB_LOAD_CLIENTS"
DEFAULT_LOAD_PAUSE = 0.1
# where else a run's metrics go: configuration key -> environment variable that overrides it
METRICS_DESTINATIONS = {"chaoslab_metrics_dir": "CHAOSLAB_METRICS_DIR", "chaoslab_pushgateway": "CHAOSLAB_PUSHGATEWAY"}


@dataclass
class Run:
    """One measured run, from the control's first hook to its last: what it holds, and what
    it passes to the instruments."""

    lab: Lab
    experiment: Experiment
    folder: Path
    brought_up: bool
    resources: ExitStack
    experiment_file: str | None
    configuration: Configuration
    started: float = field(default_factory=time.time)
    sampler: subprocess.Popen | None = None
    load: subprocess.Popen | None = None
    recorder: EventRecorder | None = None
    watchdog: safeguard.Watchdog | None = None


# The run between this control's own hooks (Chaos Toolkit calls a control's functions by name,
# with no state of their own); nothing else reads it. Activities find the measured run through
# the lab (Lab.measured_run).
_run: Run | None = None


def experiment_options(experiment: Experiment) -> dict:
    """The experiment's chaoslab extension block: scenario, downtime budget..."""
    for extension in experiment.get("extensions", []) or []:
        if extension.get("name") == "chaoslab":
            return extension
    return {}


def before_experiment_control(context: Experiment, configuration: Configuration = None,
                              secrets: Secrets = None, **kwargs: object) -> None:
    global _run
    if context.get("dry") in UNTOUCHED:
        logger.info(f"chaoslab: dry run ({context['dry'].value}): no fault, so the lab is neither brought up, "
                    "healed nor measured")
        return
    resources = ExitStack()
    # Chaos Toolkit turns SIGTERM into an error of the activity that happens to run,
    # and the run goes on; here it stops the run like Ctrl-C, rollbacks included, until the run ends.
    previous = signal.signal(signal.SIGTERM, interrupt_like_ctrl_c)
    resources.callback(signal.signal, signal.SIGTERM, previous)
    try:
        lab = Lab.from_configuration(configuration, secrets)
        problems = check_experiment(context, lab.topology)
        if problems:
            raise ChaoslabError("; ".join(problems))
        refusal = lab.provider.fault_refusal()
        if refusal:
            raise ChaoslabError(refusal)
        abort_budget = safeguard.abort_after(experiment_options(context), configuration)
        load = load_options(experiment_options(context), configuration)
        title = context.get("title", "experiment")
        resources.enter_context(lab.lock(f"chaos run: {title}"))
        brought_up = not lab.is_up()
        for line in lab.up():
            logger.info(f"chaoslab: {line}")
        if not brought_up:
            for line in lab.heal():
                logger.warning(f"chaoslab: a previous run left a fault: {line}")
            lab.wait_ready()
        folder = create_run_dir(title)
        _run = Run(lab, context, folder, brought_up, resources, experiment_source(), configuration or {})
        _run.recorder = EventRecorder(lab, lab.topology.vip, folder / EVENTS)
        _run.recorder.start()
        _run.sampler = start_sampler(lab, folder)
        if load is not None:
            _run.load = start_load(lab, folder, load)
        _run.watchdog = safeguard.start(abort_budget, folder / SAMPLES, _run.recorder)
        resources.enter_context(lab.measured_into(folder))
        logger.info(f"chaoslab: measuring from the client; results in {folder}")
    except ChaoslabError as error:
        finish(None)
        resources.close()
        logger.error(f"chaoslab could not prepare the lab: {error}")
        # exit code 30 tells Chaos Toolkit to skip the rollbacks: nothing was injected, and the
        # lab may be another run's (a busy lab), whose faults are not ours to undo
        raise SystemExit(NO_ROLLBACKS) from error
    except BaseException:
        finish(None)
        resources.close()
        raise


def start_sampler(lab: Lab, folder: Path) -> subprocess.Popen:
    return start_instrument(lab, "sampler", folder / SAMPLES, [
        *lab.topology.target().arguments(),
        "--interval", str(lab.provider.sampler_interval), "--timeout", str(SAMPLER_TIMEOUT),
        "--max-duration", str(SAMPLER_MAX_DURATION),
    ])


def start_load(lab: Lab, folder: Path, load: LoadOptions) -> subprocess.Popen:
    return start_instrument(lab, "load", folder / LOAD, [
        *lab.topology.target().arguments(), "--clients", str(load.clients), "--pause", str(load.pause),
        "--timeout", str(SAMPLER_TIMEOUT), "--max-duration", str(SAMPLER_MAX_DURATION),
    ])


def start_instrument(lab: Lab, module: str, output: Path, arguments: list[str]) -> subprocess.Popen:
    """chaoslab.measure.<module> at the client's vantage point, writing output; returns once it wrote a line."""
    command = lab.provider.client_command([sys.executable, "-m", f"chaoslab.measure.{module}", "--output", str(output),
                                           *arguments])
    log_path = output.with_name(f"{module}.log")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and process.poll() is None:
        if output.exists() and output.stat().st_size > 0:
            return process
        time.sleep(0.02)
    process.kill()
    process.wait()
    raise ChaoslabError(f"the {module} did not start; see {log_path}")


@dataclass(frozen=True)
class LoadOptions:
    """The keep-alive clients a run adds beside the sampler (chaoslab.measure.load)."""

    clients: int
    pause: float = DEFAULT_LOAD_PAUSE


def load_options(options: dict, configuration: Configuration) -> LoadOptions | None:
    """The experiment's "load" ({"clients": N, "pause": seconds} in its chaoslab extension), which
    chaoslab_load_clients (configuration, or CHAOSLAB_LOAD_CLIENTS) overrides or adds for any
    experiment: 0 turns it off, "" leaves it as the experiment says. None: no load."""
    declared = options.get("load") or {}
    if not isinstance(declared, dict):
        raise ChaoslabError(f'the chaoslab extension\'s "load" must be an object such as {{"clients": 20}}, not {declared!r}')
    given = configured(configuration, LOAD_CLIENTS_KEY, LOAD_CLIENTS_ENV)
    clients = declared.get("clients", 0) if given in (None, "") else given
    pause = declared.get("pause", DEFAULT_LOAD_PAUSE)
    try:
        clients, pause = int(clients), float(pause)
    except (TypeError, ValueError):
        clients = pause = -1
    if not 0 <= clients <= MAX_CLIENTS or not 0 <= pause <= 60:
        raise ChaoslabError(f"the load's clients ({LOAD_CLIENTS_KEY}, {LOAD_CLIENTS_ENV} or the extension's "
                            f'"load": {{"clients": N}}) must be a whole number within 0..{MAX_CLIENTS}, and its pause '
                            f"seconds within 0..60, not clients {clients!r}, pause {pause!r}")
    return LoadOptions(clients, pause) if clients else None


def before_rollback_control(context: Experiment, configuration: Configuration = None,
                            secrets: Secrets = None, **kwargs: object) -> None:
    """The rollbacks restore the lab: the safeguard must not interrupt them."""
    if _run is not None and _run.watchdog is not None:
        _run.watchdog.stop()


def after_experiment_control(context: Experiment, state: Journal, configuration: Configuration = None,
                             secrets: Secrets = None, **kwargs: object) -> None:
    finish(state)


def finish(journal: Journal | None) -> None:
    """Heal, stop the instruments, write everything, release the lab. Never raises
    for a result it cannot write: what was measured stays on disk."""
    global _run
    run, _run = _run, None
    if run is None:
        return
    with run.resources, interrupts_deferred():
        try:
            if run.watchdog is not None:
                run.watchdog.stop()
            recovered, not_undone = heal_and_settle(run.lab, lab_stays=not run.brought_up)
            stop_instruments(run)
            if journal is not None and steady_state_before(journal) is False and journal.get("status") == "completed":
                journal["status"] = "failed"  # nothing was tested: chaos exits non-zero
            summary: dict = {}
            try:
                summary = write_results(run, journal, recovered, not_undone)
            finally:  # the journal is written even when the results could not be
                if journal is not None:
                    journal.setdefault("extensions", []).append(journal_extension(run, summary))
                    write_json(run.folder / JOURNAL, journal)
        except Exception:
            logger.exception(f"chaoslab: could not finish the results in {run.folder}; the raw files stay there")
        finally:
            stop_instruments(run)
            if run.brought_up:
                for line in run.lab.down():
                    logger.info(f"chaoslab: removed {line}")


def interrupt_like_ctrl_c(signum: int, frame: object) -> None:
    logger.warning(f"chaoslab: {signal.Signals(signum).name} received: interrupting the run, rollbacks follow")
    raise KeyboardInterrupt


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """While the lab is healed and the results written, Ctrl-C or SIGTERM cannot cut it short."""
    def refuse(signum: int, frame: object) -> None:
        logger.warning(f"chaoslab: {signal.Signals(signum).name} received while healing the lab and writing "
                       "results; finishing that first")

    previous = {signum: signal.signal(signum, refuse) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def heal_and_settle(lab: Lab, lab_stays: bool) -> tuple[bool, list[str]]:
    """Heal the lab and wait until the VIP serves in turn again: in the full steady state
    (the preferred master back) when the lab stays up, from any holder when the run removes it.
    Returns whether it did, and what the heal could not undo."""
    try:
        done = lab.heal()
        not_undone: list[str] = []
    except HealIncomplete as incomplete:
        done, not_undone = incomplete.done, incomplete.failed
    for line in done:
        logger.warning(f"chaoslab: healed at teardown: {line}")
    for line in not_undone:
        logger.error(f"chaoslab: the heal at teardown failed: {line}")
    try:
        lab.wait_ready(any_holder=not lab_stays)
        time.sleep(SETTLE_AFTER)  # a few good samples after the recovery
        return True, not_undone
    except ChaoslabError as error:
        logger.error(f"chaoslab: the lab did not return to steady state: {error}")
        return False, not_undone


def stop_instruments(run: Run) -> None:
    if run.load is not None:
        stop(run.load, grace=SAMPLER_TIMEOUT * 2 + STOP_GRACE + 3)
    run.load = None
    if run.sampler is not None:
        stop(run.sampler, grace=SAMPLER_TIMEOUT + 5)
    run.sampler = None
    if run.recorder is not None:
        run.recorder.stop()
        run.recorder = None


def journal_extension(run: Run, summary: dict) -> dict:
    """What the journal carries of the run, for `chaos report` and any journal reader: where its results
    are, and its numbers (the summary's headline; the whole of it is the folder's summary.json)."""
    numbers = {key: summary.get(key) for key in JOURNAL_NUMBERS}
    return {"name": "chaoslab", "results": str(run.folder), **numbers}


JOURNAL_NUMBERS = ("verdict", "verdict_reason", "downtime", "downtime_at_least", "downtime_failed", "requests", "failed",
                   "failed_by_kind", "phases", "impact", "fault_window", "theory", "within_theory", "theory_note",
                   "fault", "vip_holder_before", "vip_holder_after", "load")


def write_results(run: Run, journal: Journal | None, recovered: bool, not_undone: list[str]) -> dict:
    options = experiment_options(run.experiment)
    samples = analysis.load_samples(run.folder / SAMPLES)
    events = analysis.load_events(run.folder / EVENTS)
    prediction = None
    if options.get("scenario"):
        backup, master = takeover_priorities(run.lab.topology, events)
        prediction = theory.expected_outage(options["scenario"], run.lab.profile.settings, backup, master,
                                            run.lab.topology.preempt, len(run.lab.topology.webservers))
    steady_before = steady_state_before(journal)
    summary = analysis.summarize(samples, events, run.lab.provider.sampler_interval, prediction,
                                 options.get("focus", "inject"), steady_before, SAMPLER_TIMEOUT)
    summary["load"] = load_summary(run.folder / LOAD, summary)
    breach = safeguard.breach(events)
    summary["run"] = {
        "experiment": run.experiment.get("title"),
        "experiment_file": run.experiment_file,
        "scenario": options.get("scenario"),
        "target": run.lab.topology.target().url,
        "downtime_budget": options.get("downtime_budget"),
        "profile": run.lab.profile.name,
        "provider": run.lab.settings.provider,
        "prefix": run.lab.prefix,
        "started": run.started,
        "ended": time.time(),
        "status": journal_status(journal),
        "steady_state_before": steady_before,
        "lab_recovered": recovered,
        "heal_failures": not_undone,
        "folder": str(run.folder),
        "aborted_by": "safeguard" if breach else None,
        "safeguard": breach,
    }
    write_json(run.folder / SUMMARY, summary)
    junit.write_junit(run.folder / JUNIT, [summary])
    export_metrics(run, summary)
    title = f"{run.experiment.get('title', 'experiment')} (profile {run.lab.profile.name})"
    from chaoslab.measure import plots  # matplotlib: loaded by the run that draws, not by every chaoslab command

    plots.plot_run(samples, events, summary, run.folder / CHART, title)
    downtime = summary.get("downtime")
    logger.info(
        f"chaoslab: downtime {downtime if downtime is not None else 'n/a'} s, "
        f"{summary['failed']} failed requests; chart {run.folder / CHART}"
    )
    if summary["load"]:
        load = summary["load"]
        logger.info(f"chaoslab: load of {load['clients']} keep-alive clients: {load['answered']} of {load['requests']} "
                    f"answered, {load['connections_reset']} connections broke while reused, "
                    f"{load['in_flight_lost']} requests in flight lost")
    for restart in summary["restarts"]:
        logger.warning(f"chaoslab: {restart['text']}")
    if summary["theory_note"]:
        logger.warning(f"chaoslab: not judged against theory: {summary['theory_note']}")
    if steady_before is False:
        logger.error("chaoslab: the steady state was not met before the method: nothing was tested "
                     "(the run is marked failed)")
    if not_undone:
        logger.error(f"chaoslab: the lab keeps faults the heal could not undo ({'; '.join(not_undone)}): "
                     "undo them by hand, see summary.json's run.heal_failures")
    history.record_run(summary, options.get("downtime_budget"), run.experiment_file, run.lab.software_versions())
    return summary


def load_summary(path: Path, summary: dict) -> dict | None:
    """What the keep-alive clients saw, before, during (the fault window) and after the fault; None without a load."""
    if not path.exists():
        return None
    window = summary.get("fault_window") or {}
    end = window.get("end") if window.get("end") is not None else summary.get("last_sent")
    return summarize_load(load_records(path), window.get("start"), end)


def export_metrics(run: Run, summary: dict) -> None:
    """The run's Prometheus metrics: in its folder, and where the configuration or environment says
    (chaoslab_metrics_dir: node_exporter's textfile collector; chaoslab_pushgateway: a Pushgateway URL).
    A destination that cannot be written is logged; the run's own files do not depend on it."""
    where = {key: configured(run.configuration, key, variable) or None for key, variable in METRICS_DESTINATIONS.items()}
    try:
        written = metrics.export(summary, run.folder, where["chaoslab_metrics_dir"], where["chaoslab_pushgateway"])
    except OSError as error:
        logger.error(f"chaoslab: could not write or push the run's metrics ({error}); {run.folder / metrics.METRICS} "
                     "has them if the folder could be written")
        return
    if len(written) > 1:
        logger.info(f"chaoslab: metrics written to {', '.join(written)}")


def takeover_priorities(topology: Topology, events: list[dict]) -> tuple[int, int]:
    """The VRRP priorities of the load balancer that takes over and of the master it takes over from:
    the one not holding the VIP when the run started and the holder (under nopreempt either may hold it);
    the lower and the higher when that is not known."""
    start = analysis.run_snapshot(events, "start") or {}
    holders = start.get("holders") or []
    others = [spec.vrrp_priority for spec in topology.loadbalancers if spec.name not in holders]
    held = [spec.vrrp_priority for spec in topology.loadbalancers if spec.name in holders]
    if len(others) == 1 and len(held) == 1:
        return others[0], held[0]
    priorities = sorted(spec.vrrp_priority for spec in topology.loadbalancers)
    return priorities[0], priorities[-1]


def experiment_source() -> str | None:
    """The experiment file `chaos run` was given (its command line's SOURCE), relative to the project
    if it is in it; None when the control runs outside Chaos Toolkit's command line."""
    context = click.get_current_context(silent=True)
    source = context.params.get("source") if context is not None else None
    if not source:
        return None
    path = Path(source)
    if path.exists():
        path = path.resolve()
        return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)
    return source


def steady_state_before(journal: Journal | None) -> bool | None:
    """Whether the steady-state hypothesis held before the method; None if it was not checked."""
    before = ((journal or {}).get("steady_states") or {}).get("before")
    return None if before is None else bool(before.get("steady_state_met"))


def journal_status(journal: Journal | None) -> str:
    if journal is None:
        return "aborted"
    return "deviated" if journal.get("deviated") else journal.get("status", "unknown")
