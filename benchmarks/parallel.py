"""Run the shell commands of a file N at a time, stopping what still runs at a deadline.

    python benchmarks/parallel.py TASKS.txt --jobs 14 --deadline 300 --logs DIR

One command per line of TASKS.txt (blank lines and lines starting with '#' are skipped), started in
file order, so put the ones that matter most first. Each command's stdout and stderr go to
``DIR/<line number>.log``. At ``--deadline`` seconds after the start, commands still running are sent
SIGTERM (then SIGKILL after 10 s) and commands not started are listed as not run. Made for
``mmrec-motor bench`` and the analyses, whose folders resume: rerunning the same file later finishes
only what is missing. Prints one line per finished command and a closing count; exits 1 when a
command failed or did not finish.
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def read_tasks(path: str) -> list:
    with open(path, encoding="utf-8") as handle:
        lines = [(n, line.strip()) for n, line in enumerate(handle, 1)]
    return [(n, line) for n, line in lines if line and not line.startswith("#")]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the command's process group, SIGKILL it if it is still there after 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", help="file with one shell command per line")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds from the start")
    parser.add_argument("--logs", required=True, help="folder for each command's output")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    os.makedirs(args.logs, exist_ok=True)
    pending = read_tasks(args.tasks)
    running = {}
    failed, stopped, done = [], [], 0
    start = time.monotonic()
    while pending or running:
        for number in [n for n, (p, *_rest) in running.items() if p.poll() is not None]:
            process, command, began, log = running.pop(number)
            log.close()
            done += 1
            status = "ok" if process.returncode == 0 else f"exit {process.returncode}"
            if process.returncode:
                failed.append(number)
            print(f"[{status} in {time.monotonic() - began:.0f}s, {time.monotonic() - start:.0f}s total] "
                  f"line {number}: {command}", flush=True)
        late = time.monotonic() - start > args.deadline
        while pending and len(running) < args.jobs and not late:
            number, command = pending.pop(0)
            log = open(os.path.join(args.logs, f"{number}.log"), "w", encoding="utf-8")
            running[number] = (subprocess.Popen(command, shell=True, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True), command, time.monotonic(), log)
        if late:
            for number, (process, command, began, log) in running.items():
                stop(process)
                log.close()
                stopped.append(number)
                print(f"[stopped at deadline after {time.monotonic() - began:.0f}s] line {number}: {command}",
                      flush=True)
            for number, command in pending:
                print(f"[not started] line {number}: {command}", flush=True)
            stopped += [n for n, _ in pending]
            running, pending = {}, []
            break
        time.sleep(0.5)
    print(f"{done} finished ({len(failed)} failed: lines {failed}), {len(stopped)} stopped or not started",
          flush=True)
    return 1 if failed or stopped else 0


if __name__ == "__main__":
    sys.exit(main())
