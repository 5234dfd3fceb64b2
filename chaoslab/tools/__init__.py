"""The tools on top: the command line, the dry run, schedules, the report and the benchmarks."""
