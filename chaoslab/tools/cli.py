"""The chaoslab command: the lab's life cycle, schedules, the history of runs, reports and benchmarks."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from chaoslab.checks import file_problems
from chaoslab.configs.importer import prediction_rows
from chaoslab.errors import ChaoslabError
from chaoslab.lab.lab import Lab, inventory_topology
from chaoslab.lab.roles import SELECTORS
from chaoslab.lab.settings import LabSettings
from chaoslab.lab.topology import Topology
from chaoslab.measure import history
from chaoslab.measure.theory import Prediction
from chaoslab.paths import PROJECT_DIR, results_dir
from chaoslab.tools import dryrun, pair_commands, schedule, starter
from chaoslab.tools.bench import bench_failover, bench_lab, bench_load, bench_matrix, bench_sampler, bench_vagrant
from chaoslab.tools.matrix import MATRIX_PREFIX, PROFILES, SCENARIOS
from chaoslab.tools.tables import table

Handler = Callable[[argparse.Namespace], int]
AddParser = Callable[..., argparse.ArgumentParser]  # a subparsers action's add_parser


def lab_from(args: argparse.Namespace) -> Lab:
    defaults = LabSettings.resolve()
    return Lab(replace(
        defaults,
        provider=args.provider or defaults.provider,
        profile=getattr(args, "profile", None) or defaults.profile,
        prefix=args.prefix or defaults.prefix,
        inventory=args.inventory or defaults.inventory,
    ))


def lab_up(args: argparse.Namespace) -> int:
    lab, promises = rehearsal(args) if args.configs else (lab_from(args), None)
    started = time.monotonic()
    for line in lab.up():
        print(line)
    print(f"took {time.monotonic() - started:.2f} s")
    if promises:
        print(table([("FAULT", "THE CONFIGS PROMISE", "WHY"), *prediction_rows(promises)]))
    return 0


def rehearsal(args: argparse.Namespace) -> tuple[Lab, tuple[Prediction, ...]]:
    """lab up --configs DIR: the pair's own configs, as written, in the netns lab, and what they promise."""
    if (args.provider or "netns") != "netns":
        raise ChaoslabError(f"--configs rehearses a pair in the netns lab, not the {args.provider} provider; "
                            "leave out --provider")
    imported = pair_commands.imported(args.configs, pair_commands.parse_addresses(args.address))
    topology = Topology(imported.topology, args.configs / pair_commands.TOPOLOGY_FILE)
    defaults = LabSettings.resolve()
    lab = Lab(replace(defaults, provider="netns", prefix=args.prefix or defaults.prefix,
                      configs=str(args.configs.resolve())), topology)
    return lab, imported.predictions


def lab_down(args: argparse.Namespace) -> int:
    lab = lab_from(args)
    with lab.lock("chaoslab lab down"):
        removed = lab.down()
    print("\n".join(f"removed {line}" for line in removed) if removed else f"lab {lab.prefix!r} is not up: nothing to do")
    return 0


def lab_status(args: argparse.Namespace) -> int:
    lab = lab_from(args)
    if not lab.is_up():
        print(f"lab {lab.prefix!r} is down")
        return 1
    print(f"lab {lab.prefix!r}: provider {lab.settings.provider}, profile {lab.profile.name}, VIP {lab.topology.vip}")
    rows = [("NODE", "ROLE", "ADDRESSES", "SERVICES", "VRRP", "VIP")]
    for node in lab.nodes():
        halted = node.is_halted()
        services = "halted" if halted else ",".join(
            f"{service}(frozen)" if node.is_service_frozen(service) else service
            for service in node.running_services()
        ) or "-"
        rows.append((
            node.name,
            node.spec.role,
            ",".join(f"{i.name}={i.address}" for i in node.spec.interfaces),
            services,
            node.vrrp_state() if node.spec.role == "loadbalancer" else "-",
            "holder" if node.holds_vip() else "-",
        ))
    print(table(rows))
    outcomes = lab.request(count=4, timeout=1.0)
    answers = ", ".join((outcome.backend or "answered") if outcome.ok else (outcome.error or "?") for outcome in outcomes)
    print(f"VIP answers: {answers}")
    return 0


def lab_exec(args: argparse.Namespace) -> int:
    lab = lab_from(args)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise ChaoslabError("no command given; usage: chaoslab lab exec NODE -- COMMAND [ARG...]")
    if args.node not in SELECTORS:
        lab.node(args.node)  # an unknown name lists the known ones, lab up or not
    lab.require_up()
    result = lab.node(args.node).run(command, timeout=args.timeout)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


def box_build(args: argparse.Namespace) -> int:
    from chaoslab.lab import box

    started = time.monotonic()
    for line in box.build(force=args.force):
        print(line)
    print(f"took {time.monotonic() - started:.2f} s")
    return 0


def schedule_runs(args: argparse.Namespace) -> int:
    if args.print_cron and args.count is not None:
        raise ChaoslabError("--print-cron prints units that run one round each time; leave out --count")
    runs = schedule.make_schedule(args.experiments, args.every, args.count, args.profile, args.junit)
    if args.print_cron:
        environment_file = schedule.write_environment_file(results_dir() / schedule.ENVIRONMENT_FILE,
                                                            schedule.unattended_settings(os.environ))
        print(f"# the CHAOSLAB_* settings of this shell are in {environment_file} (mode 0600)")
        print(schedule.unattended(runs, environment_file), end="")
        return 0
    return schedule.Scheduler(runs).run()


def history_table(args: argparse.Namespace) -> int:
    if args.last is not None and args.last < 1:
        raise ChaoslabError(f"--last must be at least 1, not {args.last}")
    path = history.history_path()
    runs = history.load(path, args.experiment, args.last)
    if not runs:
        which = f" of experiment {args.experiment!r}" if args.experiment else ""
        print(f"no runs{which} recorded in {path}")
        return 0
    print(table(history.terminal_rows(runs)))
    return 0


def write_report(args: argparse.Namespace) -> int:
    from chaoslab.tools import report  # matplotlib: imported only by the commands that draw

    output = report.build_report(output=Path(args.output) if args.output else None)
    print(f"report written to {output}")
    return 0


def bench_report(args: argparse.Namespace) -> int:
    from chaoslab.tools import report  # matplotlib: imported only by the commands that draw

    return run_bench(report.bench, args.runs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaoslab",
        description="Chaos experiments against a highly available load balancer (HAProxy + Keepalived + Apache).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (add_lab_commands, add_config_commands, add_box_commands, add_run_commands, add_experiment_commands,
                add_bench_commands):
        add(commands.add_parser)
    return parser


def add_lab_commands(add_parser: AddParser) -> None:
    """chaoslab lab up | down | status | exec."""
    lab = add_parser("lab", help="bring the lab up or down, show it, run a command on a node")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    def lab_command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = lab_commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--provider", help="netns (default), vagrant or ssh (env CHAOSLAB_PROVIDER)")
        sub.add_argument("--prefix", help="names every namespace of the lab (default chaoslab; env CHAOSLAB_PREFIX)")
        sub.add_argument("--inventory", help="the ssh provider's hosts, an Ansible inventory (env CHAOSLAB_INVENTORY)")
        sub.set_defaults(handler=handler)
        return sub

    up = lab_command("up", lab_up, "bring the lab up and wait until the VIP answers (no change if it is up)")
    up.add_argument("--profile", help="settings profile from the topology (default: seed; env CHAOSLAB_PROFILE)")
    up.add_argument("--configs", type=Path, metavar="DIR",
                    help="rehearse a pair's own configs in the netns lab: DIR/<node>/keepalived/ and "
                         "DIR/<node>/haproxy/ as its hosts' /etc/keepalived and /etc/haproxy")
    add_address_option(up)
    lab_command("down", lab_down, "remove everything the lab made (fine when nothing is up)")
    lab_command("status", lab_status, "show nodes, services, VRRP states, the VIP holder and what the VIP answers")
    execute = lab_command("exec", lab_exec, "run a command on a node: chaoslab lab exec NODE -- CMD [ARG...]")
    execute.add_argument("node", help="node name, or a part: vrrp-master, vrrp-backup, vip-holder, webserver")
    execute.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    execute.add_argument("--timeout", type=float, default=60.0, help="seconds before the command is stopped")


def add_address_option(parser: argparse.ArgumentParser) -> None:
    """--address NODE=ADDRESS, for configs that do not name a node's address (import, lab up --configs)."""
    parser.add_argument("--address", action="append", default=[], metavar="NODE=ADDRESS",
                        help="a load balancer's address on the VIP's network, where its keepalived.conf has "
                             "no unicast_src_ip (repeat per node)")


def add_config_commands(add_parser: AddParser) -> None:
    """chaoslab import | lint: a pair's own keepalived.conf and haproxy.cfg."""
    layout = ("DIR holds a folder per load balancer, named as the node: DIR/<node>/keepalived/ (its "
              "/etc/keepalived) and DIR/<node>/haproxy/ (its /etc/haproxy)")
    importing = add_parser(
        "import", help="write the topology of a pair from its own keepalived.conf and haproxy.cfg",
        description="Read both load balancers' keepalived.conf and haproxy.cfg, have keepalived -t and haproxy -c "
                    "judge them where installed, write the topology chaoslab runs on (DIR/topology.json) and print "
                    f"what was assumed or not mapped, and what the configs promise for each fault. {layout}.")
    importing.add_argument("directory", type=Path, metavar="DIR", help="the pair's configs")
    importing.add_argument("--output", type=Path, help="where to write the topology (default DIR/topology.json)")
    importing.add_argument("--from-inventory", metavar="INVENTORY",
                           help="first copy /etc/keepalived and /etc/haproxy of this Ansible inventory's load "
                                "balancers into DIR over ssh")
    add_address_option(importing)
    importing.set_defaults(handler=pair_commands.import_command)
    linting = add_parser(
        "lint", help="what in a pair's configs will hurt in a failover, with the fix",
        description="Findings across both load balancers' configs, each with its severity, file:line, what it "
                    f"causes in a failover and the fix; exit status 1 when any is an error. {layout}.")
    linting.add_argument("directory", type=Path, metavar="DIR", help="the pair's configs")
    linting.set_defaults(handler=pair_commands.lint_command)


def add_box_commands(add_parser: AddParser) -> None:
    """chaoslab box build."""
    boxes = add_parser("box", help="the Vagrant box of the VMs: Debian 12 for libvirt, built offline")
    box_commands = boxes.add_subparsers(dest="box_command", required=True, metavar="ACTION")
    box_help = ("build the box chaoslab/debian-12 from provision/box/ with mmdebstrap and add it to "
                "VAGRANT_HOME=/var/lib/chaoslab/vagrant-home (nothing to do if the box of the same recipe is there)")
    box_make = box_commands.add_parser("build", help=box_help, description=box_help)
    box_make.add_argument("--force", action="store_true", help="build and add the box even if it is up to date")
    box_make.set_defaults(handler=box_build)


def add_run_commands(add_parser: AddParser) -> None:
    """chaoslab schedule | history | report: runs over time."""
    scheduling = add_parser(
        "schedule", help="run experiments one after another, round after round, in the foreground",
        description="Run the experiments one after another, a round every --every, --count rounds or until "
                    "Ctrl-C (which lets the running experiment roll back and write its results first).")
    scheduling.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                            help="experiment files, such as experiments/failover.json")
    scheduling.add_argument("--every", default="30m",
                            help="time from one round's start to the next: 30s, 5m, 2h... (default 30m)")
    scheduling.add_argument("--count", help="how many rounds (default: until stopped)")
    scheduling.add_argument("--profile",
                            help="settings profile for every run (default: each experiment's; env CHAOSLAB_PROFILE)")
    scheduling.add_argument("--junit", metavar="FILE",
                            help="also write the runs as a JUnit XML report to FILE, one test case per run, and "
                                 "exit 1 when one failed (deviated, steady state not met, over its downtime budget)")
    scheduling.add_argument("--print-cron", action="store_true",
                            help="print a crontab line and systemd service and timer units instead of running")
    scheduling.set_defaults(handler=schedule_runs)

    recorded = add_parser("history", help="the recorded runs, as a table",
                                   description="The runs recorded in results/history.sqlite, oldest first.")
    recorded.add_argument("--experiment", help="only this experiment: its short name (failover), title or file")
    recorded.add_argument("--last", type=int, help="only the last N runs")
    recorded.set_defaults(handler=history_table)

    page = add_parser("report", help="write the HTML report of the history (results/report.html)",
                               description="One self-contained HTML page: per experiment the latest status, the "
                                           "resilience score, the downtime distribution and trend against theory.")
    page.add_argument("--output", help="where to write it (default results/report.html)")
    page.set_defaults(handler=write_report)


def add_experiment_commands(add_parser: AddParser) -> None:
    """chaoslab init | check | plan: experiments to start from, and an experiment before it runs."""
    init_help = "write the experiments, a topology, an inventory and a var file to start from into DIR, to edit"
    init = add_parser("init", help=init_help, description=init_help)
    init.add_argument("directory", type=Path, metavar="DIR", help="the folder to write (created if missing)")
    init.add_argument("--force", action="store_true", help="overwrite files that exist already")
    init.set_defaults(handler=lambda args: print_lines(
        [f"wrote {path}" for path in starter.init_folder(args.directory, args.force)]
        + [f"next: chaoslab check {args.directory / 'experiments'}/*.json; see {args.directory / starter.README}"]))

    check = add_parser("check", help="check experiments against chaoslab and the topology, before a run",
                                description="check experiments against chaoslab and the topology, before a run")
    check.add_argument("experiments", nargs="+", type=Path, metavar="EXPERIMENT", help="experiment JSON files")
    check.add_argument("--inventory", help="check against the topology this Ansible inventory names "
                                           "(chaoslab_topology; env CHAOSLAB_INVENTORY), not the project's")
    check.set_defaults(handler=check_experiments)

    dry_run = add_parser("plan", help="dry run: what each fault of an experiment would do, on which host",
                                  description="dry run: what each fault of an experiment would do, on which host; "
                                              "nothing is connected to or changed")
    dry_run.add_argument("experiment", type=Path, metavar="EXPERIMENT", help="experiment JSON file")
    dry_run.add_argument("--provider", help="netns, vagrant or ssh (default: the experiment's configuration)")
    dry_run.add_argument("--prefix", help="the lab's prefix (default: the experiment's configuration)")
    dry_run.add_argument("--inventory", help="the ssh provider's hosts, an Ansible inventory")
    dry_run.set_defaults(handler=lambda args: print_lines(dryrun.dry_run(
        args.experiment, {"provider": args.provider, "prefix": args.prefix, "inventory": args.inventory})))


def add_bench_commands(add_parser: AddParser) -> None:
    """chaoslab bench lab | failover | vagrant | sampler | load | matrix | report."""
    bench = add_parser("bench", help="benchmarks that print numbers (each uses a lab of its own)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    bench_up = bench_commands.add_parser("lab", help="lab up until the VIP answers, and lab down: median of runs")
    bench_up.add_argument("--runs", type=int, default=5, help="how many times (default 5)")
    bench_up.add_argument("--profile", help="settings profile (default: seed)")
    bench_up.set_defaults(handler=lambda args: run_bench(bench_lab, args.runs, args.profile))
    bench_run = bench_commands.add_parser("failover", help="chaos run experiments/failover.json end to end")
    bench_run.add_argument("--runs", type=int, default=3, help="how many times (default 3)")
    bench_run.set_defaults(handler=lambda args: run_bench(bench_failover, args.runs))
    bench_vm = bench_commands.add_parser(
        "vagrant", help="box build, four VMs up, failover on the VMs beside the same failover on netns")
    bench_vm.add_argument("--runs", type=int, default=3, help="failover runs on each (default 3)")
    bench_vm.add_argument("--rebuild-box", action="store_true", help="build the box even if it is cached")
    bench_vm.set_defaults(handler=lambda args: run_bench(bench_vagrant, args.runs, args.rebuild_box))
    bench_jitter = bench_commands.add_parser("sampler", help="the sampler's scheduling jitter and request latency")
    bench_jitter.add_argument("--seconds", type=float, default=10.0, help="how long to sample (default 10)")
    bench_jitter.add_argument("--interval", type=float, default=0.01, help="seconds between requests (default 0.01)")
    bench_jitter.set_defaults(handler=lambda args: run_bench(bench_sampler, args.seconds, args.interval))
    bench_load_help = "the sampler and N keep-alive clients: answers per second, and the instrument's CPU share"
    bench_keepalive = bench_commands.add_parser("load", help=bench_load_help, description=bench_load_help)
    bench_keepalive.add_argument("--seconds", type=float, default=20.0, help="how long (default 20)")
    bench_keepalive.add_argument("--clients", type=int, default=50, help="keep-alive clients (default 50)")
    bench_keepalive.set_defaults(handler=lambda args: run_bench(bench_load, args.seconds, args.clients))
    bench_grid = bench_commands.add_parser(
        "matrix", help="each profile x fault, N runs: downtime beside VRRP theory and targets; writes docs/BENCHMARKS.md",
        description="Run each profile x fault scenario N times for real (chaos run of its experiment), print median "
                    "and p95 downtime and failed requests beside VRRP theory and the targets, cross-check the "
                    "sampler and event recorder with a packet capture, and write docs/BENCHMARKS.md and "
                    "docs/benchmarks.png.")
    bench_grid.add_argument("--profiles", default=",".join(PROFILES),
                            help=f"comma-separated profiles (default {','.join(PROFILES)})")
    bench_grid.add_argument("--scenarios", default=",".join(SCENARIOS),
                            help=f"comma-separated scenarios (default all: {','.join(SCENARIOS)})")
    bench_grid.add_argument("--repeats", type=int, default=3, help="runs per profile and scenario (default 3)")
    bench_grid.add_argument("--prefix", default=MATRIX_PREFIX,
                            help=f"prefix of the benchmark's lab (default {MATRIX_PREFIX})")
    bench_grid.add_argument("--docs", type=Path, default=PROJECT_DIR / "docs",
                            help="folder BENCHMARKS.md and benchmarks.png are written to (default docs/)")
    bench_grid.set_defaults(handler=run_matrix)
    bench_page = bench_commands.add_parser("report", help="the HTML report and its charts over synthetic runs")
    bench_page.add_argument("--runs", type=int, default=100, help="how many synthetic runs (default 100)")
    bench_page.set_defaults(handler=bench_report)


def print_lines(lines: Sequence[str]) -> int:
    print("\n".join(lines))
    return 0


def check_experiments(args: argparse.Namespace) -> int:
    topology = inventory_topology(args.inventory or os.environ.get("CHAOSLAB_INVENTORY")) or Topology.load()
    print(f"against the topology {topology.source}")
    failed = False
    for path in args.experiments:
        problems = file_problems(path, topology)
        for problem in problems:
            print(f"chaoslab: {path}: {problem}", file=sys.stderr)
        if not problems:
            print(f"ok: {path}")
        failed = failed or bool(problems)
    return 2 if failed else 0


def run_matrix(args: argparse.Namespace) -> int:
    profiles, scenarios = args.profiles.split(","), args.scenarios.split(",")
    command = (f"chaoslab bench matrix --profiles {','.join(profiles)} --scenarios {','.join(scenarios)} "
               f"--repeats {args.repeats}")
    bench_matrix(profiles, scenarios, args.repeats, args.prefix, args.docs, command)
    return 0


def run_bench(benchmark: Callable[..., None], *arguments: object) -> int:
    benchmark(*arguments)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ChaoslabError as error:
        print(f"chaoslab: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chaoslab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
