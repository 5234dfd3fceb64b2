"""Benchmarks that print numbers: lab bring-up and tear-down, a whole failover run, the sampler's jitter,
the load of keep-alive clients and what the instrument costs, and the matrix of measured failovers
against VRRP theory that writes docs/BENCHMARKS.md.

Speed targets live here, not in timed tests; the README quotes what these print.
Each benchmark uses a lab prefix of its own and removes what it made.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from chaoslab.commands import stop
from chaoslab.control import DEFAULT_LOAD_PAUSE
from chaoslab.lab.lab import Lab
from chaoslab.lab.providers.netns import NetnsProvider
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.measure.client import Outcome
from chaoslab.measure.load_analysis import load_records, summarize_load
from chaoslab.paths import EXPERIMENTS_DIR, results_dir
from chaoslab.tools import matrix

BENCH_PREFIX = "bench"
BENCH_VM_PREFIX = "benchvm"
BENCH_LOAD_PREFIX = "benchload"


def describe(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    return (f"median {statistics.median(values):.{digits}f} {unit} "
            f"(min {min(values):.{digits}f}, max {max(values):.{digits}f}, n={len(values)})")


def bench_lab(runs: int, profile: str | None) -> None:
    """Lab up until the VRRP master holds the VIP and it answers from both backends; lab down."""
    lab = Lab(LabSettings(prefix=BENCH_PREFIX, profile=profile))
    lab.down()
    ups, downs, daemons = [], [], []
    try:
        for _ in range(runs):
            started = time.monotonic()
            lab.provider.up()
            daemons.append(time.monotonic() - started)
            lab.wait_ready()
            ups.append(time.monotonic() - started)
            started = time.monotonic()
            lab.down()
            downs.append(time.monotonic() - started)
    finally:
        lab.down()
    advert = lab.profile.advert_int
    print(f"lab up   (profile {lab.profile.name}, until the master holds the VIP and it answers): {describe(ups)}")
    print(f"  of which network, configs and daemons started: {describe(daemons)}")
    print(f"  the rest is Keepalived's start in BACKUP: it waits 3-4 adverts of {advert:g} s before it may be MASTER")
    print(f"lab down: {describe(downs)}")


def failover_run(environment: dict[str, str]) -> tuple[float, dict]:
    """One `chaos run experiments/failover.json` in a scratch folder: how long it took, and its summary."""
    chaos = str(Path(sys.executable).parent / "chaos")
    with tempfile.TemporaryDirectory(prefix="chaoslab-bench-") as scratch:
        started = time.monotonic()
        result = subprocess.run(
            [chaos, "--log-file", f"{scratch}/chaos.log", "run", "--journal-path", f"{scratch}/journal.json",
             str(EXPERIMENTS_DIR / "failover.json")],
            capture_output=True, text=True, env={**os.environ, **environment, "CHAOSLAB_RESULTS": scratch},
            cwd=scratch, timeout=1800,
        )
        duration = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"chaos run failed:\n{Path(scratch, 'chaos.log').read_text()[-3000:]}")
        return duration, json.loads(next(Path(scratch).glob("*/summary.json")).read_text())


def bench_failover(runs: int) -> None:
    """`chaos run experiments/failover.json` end to end on a machine with no lab up."""
    durations, downtimes = [], []
    for _ in range(runs):
        duration, summary = failover_run({"CHAOSLAB_PREFIX": BENCH_PREFIX})
        durations.append(duration)
        downtimes.append(summary["downtime"])
    print(f"chaos run experiments/failover.json, lab bring-up included: {describe(durations)}")
    print(f"  measured downtime (HAProxy stopped on the master, seed check): {describe(downtimes)}")


def bench_vagrant(runs: int, rebuild_box: bool) -> None:
    """The Vagrant path: box build, four VMs up, failover runs on them, and the same failover on netns."""
    from chaoslab.lab import box  # python-vagrant and the box recipe: only this benchmark needs them

    started = time.monotonic()
    built = box.build(force=rebuild_box)
    print(f"box build{' (forced)' if rebuild_box else ''}: {time.monotonic() - started:.1f} s; {built[-1]}")
    lab = Lab(LabSettings(provider="vagrant", prefix=BENCH_VM_PREFIX))
    lab.down()
    vm_durations, vm_downtimes = [], []
    try:
        started = time.monotonic()
        lab.up()
        print(f"four VMs up under QEMU, until the VIP answers from both backends: {time.monotonic() - started:.0f} s")
        for _ in range(runs):
            duration, summary = failover_run({"CHAOSLAB_PROVIDER": "vagrant", "CHAOSLAB_PREFIX": BENCH_VM_PREFIX})
            vm_durations.append(duration)
            vm_downtimes.append(summary["downtime"])
    finally:
        started = time.monotonic()
        lab.down()
        print(f"lab down (VMs, networks, libvirt, namespace): {time.monotonic() - started:.0f} s")
    netns_downtimes = [failover_run({"CHAOSLAB_PREFIX": BENCH_PREFIX})[1]["downtime"] for _ in range(runs)]
    print(f"chaos run experiments/failover.json on the VMs (lab up): {describe(vm_durations)}")
    print(f"  downtime on the VMs:   {describe(vm_downtimes)}")
    print(f"  downtime on netns:     {describe(netns_downtimes)}")
    difference = statistics.median(vm_downtimes) - statistics.median(netns_downtimes)
    print(f"  VMs minus netns: {difference:+.2f} s (the sampler's resolution: {lab.provider.sampler_interval:g} s on "
          f"the VMs, {NetnsProvider.sampler_interval:g} s on netns). Both wait for the same pid check (every 2 s, "
          f"fall 2), so each run lands anywhere in a 2 s window; on emulated VMs the check and Keepalived's "
          f"transition also run slower.")


def bench_sampler(seconds: float, interval: float) -> None:
    """The sampler's scheduling jitter: gap between successive requests minus the interval."""
    lab = Lab(LabSettings(prefix=BENCH_PREFIX))
    lab.down()
    try:
        lab.up()
        with tempfile.TemporaryDirectory(prefix="chaoslab-bench-") as scratch:
            output = Path(scratch) / "samples.jsonl"
            subprocess.run(lab.provider.client_command([
                sys.executable, "-m", "chaoslab.measure.sampler", "--output", str(output),
                *lab.topology.target().arguments(),
                "--interval", str(interval), "--max-duration", str(seconds),
            ]), check=True, timeout=seconds + 30)
            samples = sorted((Outcome.from_json(json.loads(line)) for line in output.read_text().splitlines()),
                             key=lambda sample: sample.sent)
    finally:
        lab.down()
    jitter = sorted(abs(b.sent - a.sent - interval) * 1000 for a, b in zip(samples, samples[1:]))
    p99 = jitter[int(0.99 * (len(jitter) - 1))]
    latency = sorted(sample.latency * 1000 for sample in samples)
    print(f"sampler at {interval * 1000:g} ms for {seconds:g} s: {len(samples)} requests, "
          f"{sum(sample.ok for sample in samples)} answered")
    print(f"  scheduling jitter |gap - interval|: p50 {statistics.median(jitter):.2f} ms, "
          f"p99 {p99:.2f} ms, max {jitter[-1]:.2f} ms")
    print(f"  request latency: p50 {statistics.median(latency):.2f} ms, "
          f"p99 {latency[int(0.99 * (len(latency) - 1))]:.2f} ms")


LOAD_CPU_GOAL = 0.25  # the instrument (sampler + load) may use at most this share of one core


def measure_load(seconds: float, clients: int) -> dict:
    """The sampler and `clients` keep-alive clients against the VIP of a lab of its own, no fault: the load's
    summary (chaoslab.measure.load_analysis), the sampler's requests and answers, and the CPU the instrument
    itself used (both processes, user + system, their interpreters' start included) as a share of one core,
    against LOAD_CPU_GOAL, JSON-ready."""
    lab = Lab(LabSettings(prefix=BENCH_LOAD_PREFIX))
    lab.down()
    try:
        lab.up()
        lab.wait_ready()
        with tempfile.TemporaryDirectory(prefix="chaoslab-bench-") as scratch:
            samples, load = Path(scratch) / "samples.jsonl", Path(scratch) / "load.jsonl"
            target = lab.topology.target().arguments()
            commands = [
                [sys.executable, "-m", "chaoslab.measure.sampler", "--output", str(samples), *target,
                 "--interval", str(lab.provider.sampler_interval), "--max-duration", str(seconds)],
                [sys.executable, "-m", "chaoslab.measure.load", "--output", str(load), *target,
                 "--clients", str(clients), "--max-duration", str(seconds)],
            ]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.monotonic()
            processes = [subprocess.Popen(lab.provider.client_command(command), stdin=subprocess.DEVNULL)
                         for command in commands]
            try:
                for process in processes:
                    process.wait(timeout=seconds + 30)
            finally:
                for process in processes:
                    stop(process)
            wall = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            records = load_records(load)
            sampled = [json.loads(line) for line in samples.read_text().splitlines()]
    finally:
        lab.down()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": seconds, "clients": clients, "load": summarize_load(records, None, None),
        "sampler": {"requests": len(sampled), "answered": sum("backend" in entry for entry in sampled)},
        "cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2), "cpu_share": round(cpu / wall, 3),
        "cpu_goal": LOAD_CPU_GOAL, "goal_met": cpu / wall <= LOAD_CPU_GOAL,
    }


def bench_load(seconds: float, clients: int) -> None:
    """Prints measure_load: the answers per second the stack serves to the load and to the sampler, and the
    instrument's CPU against its goal."""
    measured = measure_load(seconds, clients)
    summary, sampler = measured["load"], measured["sampler"]
    print(f"load of {clients} keep-alive clients (a request each, then a {DEFAULT_LOAD_PAUSE:g} s pause) beside the "
          f"sampler for {seconds:g} s, no fault:")
    print(f"  load: {summary['answered']} of {summary['requests']} answered, {summary['answers_per_second']} "
          f"answers/s, over {summary['connections']} connections; latency p50 "
          f"{summary['latency']['whole run']['p50_ms']} ms, p99 {summary['latency']['whole run']['p99_ms']} ms")
    print(f"  sampler: {sampler['answered']} of {sampler['requests']} answered, "
          f"{sampler['answered'] / seconds:.0f} answers/s")
    print(f"  CPU of the instrument (sampler + load): {measured['cpu_seconds']:.1f} s in "
          f"{measured['wall_seconds']:.1f} s = {measured['cpu_share']:.0%} of one core "
          f"(goal at most {LOAD_CPU_GOAL:.0%}: {'met' if measured['goal_met'] else 'NOT met'})")


def bench_matrix(profiles: Sequence[str], scenarios: Sequence[str], repeats: int, prefix: str, docs: Path,
                 command: str) -> None:
    """Every profile x fault scenario, `repeats` runs each (chaoslab.tools.matrix); prints the downtime
    table and the cross-check beside theory and the targets, and writes them with a chart to docs."""
    from chaoslab.tools import matrix_docs  # matplotlib: loaded only by the benchmark that draws

    topology = Topology.load()
    cells = matrix.cells_of(topology, profiles, scenarios, repeats)
    root = results_dir() / time.strftime("matrix-%Y%m%dT%H%M%SZ", time.gmtime())
    context = matrix_docs.RunContext.now(command)
    for profile in profiles:
        matrix.measure_profile(profile, [cell for cell in cells if cell.profile == profile], repeats, prefix, root)
    context.finish()
    matrix.save(cells, root / "matrix.json")
    print(f"\n{matrix_docs.results_table(cells)}\n\n{matrix_docs.cross_check_table(cells)}\n")
    written = matrix_docs.write_docs(cells, context, topology, docs)
    print(f"runs in {root}; wrote {', '.join(str(path) for path in written)}; took {context.duration / 60:.1f} min")
