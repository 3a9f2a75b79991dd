"""Several cnnlab processes training one model (data_parallel on JAX), on one host or many.

Every process is started with the same config, the coordinator's HOST:PORT, the number of
processes and its own id (flags, or the KERAS_DISTRIBUTION_* variables that launchers set).
Before JAX connects them, the processes meet at the coordinator's port: a process that cannot
reach it, or a coordinator whose peers do not all arrive, fails with one line once the
timeout has passed instead of waiting (or aborting) inside JAX.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from cnnlab.utils.errors import CnnlabError

ENV_ADDRESS = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
HELLO = b"cnnlab-process"
# The connections of the meeting before JAX connects, kept open until the processes leave:
# process 0 holds one per other process, the others one each (see `leave`).
_met: list[socket.socket] = []


@dataclass(frozen=True)
class Cluster:
    coordinator: str | None = None  # HOST:PORT of process 0
    processes: int = 1
    process_id: int = 0

    @property
    def is_chief(self) -> bool:
        """Process 0: the one that writes the run directory and prints the run's progress."""
        return self.process_id == 0

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = (self.coordinator or "").rpartition(":")
        return host.strip("[]"), int(port)


ONE_PROCESS = Cluster()


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise CnnlabError(f"{name}={value!r} is not an integer") from None


def cluster_from(coordinator: str | None, processes: int | None, process_id: int | None) -> Cluster:
    """The cluster the flags describe, each missing one read from KERAS_DISTRIBUTION_*."""
    if coordinator is None and os.environ.get(ENV_ADDRESS):
        coordinator = os.environ[ENV_ADDRESS].split(",")[0]  # the first job is the coordinator
    processes = processes if processes is not None else _env_int(ENV_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    if processes is None or processes == 1:
        return ONE_PROCESS
    if processes < 1:
        raise CnnlabError(f"--num-processes must be 1 or more, not {processes}")
    if coordinator is None:
        raise CnnlabError(
            f"{processes} processes need --coordinator HOST:PORT (process 0's address)"
        )
    if process_id is None or not 0 <= process_id < processes:
        raise CnnlabError(
            f"--process-id must be one of 0-{processes - 1} for {processes} processes, "
            f"not {process_id}"
        )
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CnnlabError(f"--coordinator {coordinator!r}: give HOST:PORT, e.g. node0:29500")
    return Cluster(coordinator, processes, process_id)


def check_backend(cluster: Cluster, backend: str) -> None:
    """Several processes train one model on JAX alone: refuse any other backend."""
    if cluster.processes > 1 and backend != "jax":
        raise CnnlabError(
            "several processes train one model with train.distribute: data_parallel on the jax "
            f"backend; this config's backend is {backend} (TensorFlow's multi-worker training "
            "fails under Keras 3, keras-team/keras#20585)"
        )


def join(cluster: Cluster, timeout_s: float) -> None:
    """Meet the other processes, then connect JAX's distributed runtime to them.

    Call after Keras has loaded on JAX and before any computation.

    Raises:
        CnnlabError: the coordinator was not reached, or not every process arrived, within
            `timeout_s` seconds.
    """
    if cluster.processes == 1:
        return
    deadline = time.monotonic() + timeout_s
    if cluster.is_chief:
        _gather(cluster, deadline, timeout_s)
    else:
        _report(cluster, deadline, timeout_s)
    import jax

    # CPU devices exchange gradients through gloo; GPUs use NCCL whatever this says.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=cluster.coordinator,
        num_processes=cluster.processes,
        process_id=cluster.process_id,
        initialization_timeout=max(int(deadline - time.monotonic()), 10),
    )


def leave(cluster: Cluster, timeout_s: float = 60) -> None:
    """Disconnect from JAX's distributed runtime, every process in turn, after training.

    Left to JAX's exit handler, process 0 could shut its coordination service down while
    another process's client was still leaving, and abort (`Check failed: queue.Pop() ==
    nullptr` in DistributedRuntimeService::Shutdown). Here every client leaves first (JAX's
    shutdown barrier), each other process then closes its meeting connection, and process 0
    shuts the service down once all of them are closed (or `timeout_s` has passed).
    """
    if cluster.processes == 1:
        return
    import jax
    from jax._src import distributed

    state = distributed.global_state
    if not cluster.is_chief or state.service is None:
        jax.distributed.shutdown()  # the client alone: the service is process 0's
    else:
        service, state.service = state.service, None
        jax.distributed.shutdown()
        _wait_closed(_met, time.monotonic() + timeout_s)
        service.shutdown()
    while _met:
        _met.pop().close()


def _wait_closed(peers: list[socket.socket], deadline: float) -> None:
    """Until each peer has closed its end (read gives b""), or the deadline."""
    for peer in peers:
        try:
            peer.settimeout(max(deadline - time.monotonic(), 0.01))
            while peer.recv(64):
                pass
        except OSError:
            pass


def _gather(cluster: Cluster, deadline: float, timeout_s: float) -> None:
    """Process 0: wait at the coordinator port until every other process has said hello."""
    _, port = cluster.host_port
    waiting: dict[int, socket.socket] = {}
    with socket.create_server(("", port), reuse_port=hasattr(socket, "SO_REUSEPORT")) as server:
        while len(waiting) < cluster.processes - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, cluster.processes)) - set(waiting))
                for peer in waiting.values():
                    peer.close()
                raise CnnlabError(
                    f"coordinator {cluster.coordinator}: process(es) "
                    f"{', '.join(map(str, missing))} of {cluster.processes} did not arrive "
                    f"within {timeout_s:g} s"
                )
            server.settimeout(left)
            try:
                peer, _ = server.accept()
                peer.settimeout(max(deadline - time.monotonic(), 1))
                words = peer.recv(64).split()
            except OSError:
                continue
            if (
                len(words) == 3
                and words[0] == HELLO
                and words[2] == b"%d" % cluster.processes
                and words[1].isdigit()
            ):
                waiting[int(words[1])] = peer
            else:
                peer.close()  # not one of this run's processes
    for peer in waiting.values():
        peer.sendall(b"go")
        _met.append(peer)


def _report(cluster: Cluster, deadline: float, timeout_s: float) -> None:
    """Process 1 and up: say hello to the coordinator and wait for everyone to be there."""
    hello = b"%s %d %d" % (HELLO, cluster.process_id, cluster.processes)
    while True:
        try:
            conn = socket.create_connection(cluster.host_port, timeout=2)
            conn.sendall(hello)
            conn.settimeout(max(deadline - time.monotonic(), 1))
            if conn.recv(8) == b"go":
                _met.append(conn)
                return
            conn.close()
        except OSError:
            pass
        if time.monotonic() >= deadline:
            raise CnnlabError(
                f"process {cluster.process_id}: could not reach the coordinator "
                f"{cluster.coordinator} within {timeout_s:g} s (is process 0 running, and the "
                "port open?)"
            )
        time.sleep(0.5)
