"""The chaoslab command: the lab's life cycle and, later, schedules, history and reports."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

from chaoslab.bench import bench_failover, bench_lab, bench_sampler
from chaoslab.errors import ChaoslabError
from chaoslab.lab import SELECTORS, Lab, LabSettings

Handler = Callable[[argparse.Namespace], int]


def lab_from(args: argparse.Namespace) -> Lab:
    defaults = LabSettings.resolve()
    return Lab(LabSettings(
        provider=args.provider or defaults.provider,
        profile=getattr(args, "profile", None) or defaults.profile,
        prefix=args.prefix or defaults.prefix,
    ))


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[column])) for row in rows) for column in range(len(rows[0]))]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def lab_up(args: argparse.Namespace) -> int:
    lab = lab_from(args)
    started = time.monotonic()
    for line in lab.up():
        print(line)
    print(f"took {time.monotonic() - started:.2f} s")
    return 0


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
    answers = ", ".join(outcome.backend if outcome.ok else (outcome.error or "?") for outcome in outcomes)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chaoslab",
        description="Chaos experiments against a highly available load balancer (HAProxy + Keepalived + Apache).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    lab = commands.add_parser("lab", help="bring the lab up or down, show it, run a command on a node")
    lab_commands = lab.add_subparsers(dest="lab_command", required=True, metavar="ACTION")

    def lab_command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = lab_commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--provider", help="netns (default; env CHAOSLAB_PROVIDER)")
        sub.add_argument("--prefix", help="names every namespace of the lab (default chaoslab; env CHAOSLAB_PREFIX)")
        sub.set_defaults(handler=handler)
        return sub

    up = lab_command("up", lab_up, "bring the lab up and wait until the VIP answers (no change if it is up)")
    up.add_argument("--profile", help="settings profile from the topology (default: seed; env CHAOSLAB_PROFILE)")
    lab_command("down", lab_down, "remove everything the lab made (fine when nothing is up)")
    lab_command("status", lab_status, "show nodes, services, VRRP states, the VIP holder and what the VIP answers")
    execute = lab_command("exec", lab_exec, "run a command on a node: chaoslab lab exec NODE -- CMD [ARG...]")
    execute.add_argument("node", help="node name, or vrrp-master / vrrp-backup")
    execute.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    execute.add_argument("--timeout", type=float, default=60.0, help="seconds before the command is stopped")

    bench = commands.add_parser("bench", help="benchmarks that print numbers (each uses a lab of its own)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCHMARK")
    bench_up = bench_commands.add_parser("lab", help="lab up until the VIP answers, and lab down: median of runs")
    bench_up.add_argument("--runs", type=int, default=5, help="how many times (default 5)")
    bench_up.add_argument("--profile", help="settings profile (default: seed)")
    bench_up.set_defaults(handler=lambda args: run_bench(bench_lab, args.runs, args.profile))
    bench_run = bench_commands.add_parser("failover", help="chaos run experiments/failover.json end to end")
    bench_run.add_argument("--runs", type=int, default=3, help="how many times (default 3)")
    bench_run.set_defaults(handler=lambda args: run_bench(bench_failover, args.runs))
    bench_jitter = bench_commands.add_parser("sampler", help="the sampler's scheduling jitter and request latency")
    bench_jitter.add_argument("--seconds", type=float, default=10.0, help="how long to sample (default 10)")
    bench_jitter.add_argument("--interval", type=float, default=0.01, help="seconds between requests (default 0.01)")
    bench_jitter.set_defaults(handler=lambda args: run_bench(bench_sampler, args.seconds, args.interval))
    return parser


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
