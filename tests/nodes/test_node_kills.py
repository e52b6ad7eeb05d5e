"""Two and three nodes of one organisation on one PostgreSQL and one shared folder tree, 1,000 forsendelser out to
a municipality and 1,000 in from it through the sandbox's SvarUt and SvarInn, while nodes are killed with SIGKILL
and started again at random: SvarUt holds exactly one forsendelse per outgoing messageId, every incoming one was
acknowledged and reached the archive system exactly once (no inbox folder written twice), and every status file
on the share ends at its final status. The seed fixes the kill schedule's choices; the schedule is printed (and
shown with a failure), so a failing run can be read and tried again."""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path

import pytest

from tests.dpo.network import SandboxProcess
from tests.foundation.process import DaemonProcess
from tests.nodes.support import CpuUse, node_config
from tests.nodes.traffic import NODE_SETTINGS, Traffic

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MESSAGES = 1000
KILL_EVERY_SECONDS = (1.5, 4.0)
DOWN_SECONDS = (0.1, 1.5)
KILLS_PER_NODE = 2  # at least; killing goes on while most of the work is still under way
KILLING_UNTIL = 0.9  # share of the messages finished both ways
KILLING_AT_MOST_SECONDS = 300  # past this, what is stuck is not waiting for the next kill
class Nodes:
    """The running nodes by name; kill() and start() one, each logged with the time since the run began."""

    def __init__(self, configs: list[Path]) -> None:
        self.processes = {config.parent.name: DaemonProcess(config, config.parent / "daemon.log") for config in configs}
        self.began = time.monotonic()
        self.schedule: list[str] = []
        self.kills: collections.Counter[str] = collections.Counter()

    def say(self, line: str) -> None:
        entry = f"{time.monotonic() - self.began:7.1f} s  {line}"
        self.schedule.append(entry)
        print(entry, flush=True)

    def start(self, name: str) -> None:
        """Start node `name` and wait until it runs: a kill is meant for a node at work (a start on a loaded
        machine takes seconds, and kills every few seconds would otherwise find nodes that never got going)."""
        process = self.processes[name].start_running()
        self.say(f"{name} runs (pid {process.process.pid})")

    def kill(self, name: str, progress: str) -> None:
        pid = self.processes[name].process.pid
        self.processes[name].kill9()
        self.kills[name] += 1
        self.say(f"SIGKILL {name} (pid {pid}); {progress}")

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.process is not None:
                process.stop(check_log=False)

    def check_logs(self) -> None:
        """No traceback or ERROR line in any node's log, over all its runs."""
        for process in self.processes.values():
            process.check_log()


@pytest.mark.timeout(1800)  # a bound for a hang only: the waits inside end when nothing moves
@pytest.mark.parametrize("node_count", [2, 3])
def test_nodes_killed_at_random_lose_and_double_nothing(tmp_path, postgres_database, node_count):
    rng = random.Random(1900 + node_count)
    cpu = CpuUse(postgres_database)
    sandbox = SandboxProcess(tmp_path / "sandbox")
    configs = [node_config(tmp_path, sandbox, postgres_database, f"node-{n}", **NODE_SETTINGS)
               for n in range(1, node_count + 1)]
    nodes = Nodes(configs)
    traffic = Traffic(tmp_path, sandbox, rng, MESSAGES, postgres_database)
    try:
        for name in nodes.processes:
            nodes.start(name)
        traffic.start()
        while time.monotonic() - nodes.began < KILLING_AT_MOST_SECONDS:
            time.sleep(rng.uniform(*KILL_EVERY_SECONDS))
            out, taken = traffic.progress()
            each_killed = min(nodes.kills[name] for name in nodes.processes) >= KILLS_PER_NODE
            if each_killed and min(out, taken) >= KILLING_UNTIL * MESSAGES:
                break
            victim = rng.choice(sorted(nodes.processes))
            nodes.kill(victim, f"so far {out} out at LEST, {taken} in taken by the archive")
            time.sleep(rng.uniform(*DOWN_SECONDS))
            nodes.start(victim)
        nodes.say("killing ends")
        traffic.wait_until_done()
        time.sleep(3)  # anything still in flight would show up as a duplicate now
        traffic.read_svarut()
        nodes.say("all done")
    finally:
        try:
            traffic.stop()
            nodes.stop_all()
        finally:
            sandbox.stop()
    schedule = "\n".join(nodes.schedule)
    traffic.check_each_once(f"; the kills:\n{schedule}")
    assert all(nodes.kills[name] >= KILLS_PER_NODE for name in nodes.processes), schedule
    nodes.check_logs()
    print(f"\nkills: {dict(nodes.kills)}; {cpu.summary()}; temporary files left in the status folder: "
          f"{len(traffic.leftover_temporary_files())}; schedule:\n{schedule}")
