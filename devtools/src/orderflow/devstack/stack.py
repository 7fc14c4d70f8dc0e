"""The local stack: infrastructure (embedded, or external from the environment), topics, and every
service as its own OS process, restarted if it crashes, stopped in order at the end."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiokafka import TopicPartition
from sqlalchemy.engine import make_url

from orderflow.contracts.events import Event
from orderflow.contracts.topics import all_topic_names
from orderflow.devstack.embedded import EmbeddedBroker, EmbeddedPostgres
from orderflow.devstack.kafka import KafkaCluster
from orderflow.devstack.processes import spawn, stop, wait_until, write_json_atomically
from orderflow.runtime.lag import wait_consumed
from orderflow.runtime.retry import retry_transient
from orderflow.runtime.service import create_topics
from orderflow.runtime.settings import KafkaSettings

ALL_SERVICES = ("intake", "review", "inventory", "logistics", "notify", "console")
HTTP_PORTS = {"console": 8080, "intake": 8081, "review": 8082, "inventory": 8083,
              "logistics": 8084, "notify": 8085}


def available_services() -> list[str]:
    return [s for s in ALL_SERVICES if importlib.util.find_spec(f"orderflow.{s}") is not None
            and importlib.util.find_spec(f"orderflow.{s}.__main__") is not None]


def subscriptions_of(service: str) -> list[str]:
    """The topics a service consumes (from its composition root)."""
    app = importlib.import_module(f"orderflow.{service}.app")
    return [s.topic.name for s in app.create_service().subscriptions]


def var_dir() -> Path:
    """Where runtime state lives: ``ORDERFLOW_VAR_DIR``, else ``var/`` in the checkout."""
    override = os.environ.get("ORDERFLOW_VAR_DIR")
    return Path(override).resolve() if override else project_root() / "var"


def project_root() -> Path:
    """The checkout's root (where ``var/`` lives): the nearest folder with a Makefile."""
    here = Path.cwd().resolve()
    for candidate in [here, *here.parents]:
        if (candidate / "Makefile").exists() and (candidate / "shared").is_dir():
            return candidate
    return here


BrokerChoice = Literal["kafka", "tansu"]
BROKER_CHOICES: tuple[BrokerChoice, ...] = ("kafka", "tansu")


def broker_choice(explicit: str | None = None) -> BrokerChoice:
    """The broker the stack starts: ``explicit`` (``--broker``), else ``ORDERFLOW_BROKER``, else
    Tansu, the Python-only default."""
    chosen = (explicit or os.environ.get("ORDERFLOW_BROKER") or "tansu").strip().lower()
    if chosen not in BROKER_CHOICES:
        raise ValueError(f"ORDERFLOW_BROKER / --broker is {chosen!r}: choose kafka or tansu")
    return chosen  # type: ignore[return-value]

# the consumers off the order flow's path (push -> dispatched) and their niceness on the dev
# stack's one machine (docs/decisions/0004-side-consumers-niced.md: p99 push->dispatched at
# 300 orders/s 0.83-1.12 s with every process equal, 0.46-0.49 s with these two at 10; at 19,
# the lowest: 0.38-0.50 s against 0.46-0.55 s at 10 in six alternated pairs, the two
# finishing no later)
SIDE_CONSUMERS = ("notify", "console")
#: the channel order API's keys a dev stack generates (see ``Stack.channel_keys_file``)
DEV_CHANNEL_KEYS = ("desk", "canonical", "csv", "shopify/orderflow-demo", "douyin/77977")
SIDE_CONSUMER_NICE = 19
# glibc's mmap threshold for the side consumers, fixed (glibc otherwise raises it to the largest
# block freed, and a batch's big buffers then come from the heap and fragment it): their peak
# RSS, the closest to the 150 MB target, 4-5 MB lower, for about 5 % more CPU per event in the
# processes it is given to (docs/decisions/0004-side-consumers-niced.md); these two run at the lowest
# priority, off the order flow's path
SIDE_CONSUMER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


@dataclass
class ServiceProcess:
    name: str
    replica: int
    port: int
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0

    @property
    def label(self) -> str:
        return self.name if self.replica == 0 else f"{self.name}-{self.replica}"


@dataclass
class Stack:
    root: Path
    services: list[str] = field(default_factory=available_services)
    replicas: dict[str, int] = field(default_factory=dict)
    fixed_ports: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    fresh: bool = False
    broker_kind: BrokerChoice = field(default_factory=broker_choice)
    kafka_nodes: int = 1
    # the embedded PostgreSQL flushes every commit (fsync, synchronous_commit): for faults that
    # crash it; the development default trades durability for speed
    durable_db: bool = False
    # the topics' replication factor on a broker the stack did not start (None: 1)
    topic_replication: int | None = None
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | KafkaCluster | None = None
    database_url: str = ""
    bootstrap: str = ""
    # how the stack's own clients (topic admin, publisher, lag reader) reach a broker that
    # requires authentication: a super user's settings (None: ``bootstrap``, no security)
    admin_kafka: KafkaSettings | None = None
    processes: list[ServiceProcess] = field(default_factory=list)

    # -- infrastructure -------------------------------------------------------------------------
    def start_infrastructure(self, *, create_topics: bool = True) -> None:
        self.root = self.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        external_db = self.database_url or os.environ.get("DATABASE_URL")
        external_kafka = self.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external_db:
            self.database_url = external_db
        else:
            if self.fresh:
                import shutil

                shutil.rmtree(self.root / "postgres", ignore_errors=True)
            self.postgres = EmbeddedPostgres(self.root / "postgres", durable=self.durable_db)
            self.postgres.start(55432 if self.fixed_ports else 0)
            self.database_url = self.postgres.url
        if external_kafka:
            self.bootstrap = external_kafka
        elif self.broker_kind == "kafka":
            # its log survives a restart of the stack unless ``fresh``
            if self.fresh:
                import shutil

                shutil.rmtree(self.root / "kafka", ignore_errors=True)
            cluster = KafkaCluster(self.root / "kafka", size=self.kafka_nodes)
            self.broker = cluster
            cluster.start(19092 if self.fixed_ports else 0)
            self.bootstrap = cluster.bootstrap
        else:
            tansu = EmbeddedBroker(self.root)
            self.broker = tansu
            tansu.start(19092 if self.fixed_ports else 0)
            self.bootstrap = tansu.bootstrap
        if create_topics:
            asyncio.run(self.create_topics())

    async def create_topics(self) -> None:
        replication = (self.broker.replication_factor if isinstance(self.broker, KafkaCluster)
                       else self.topic_replication or 1)
        await retry_transient(lambda: create_topics(self.kafka, all_topic_names(), replication),
                              what="create topics", max_attempts=20)

    @property
    def embedded(self) -> dict[str, bool]:
        return {"postgres": self.postgres is not None, "broker": self.broker is not None}

    @property
    def database_on_this_machine(self) -> bool:
        """The embedded database, or one reached over the loopback or a Unix socket."""
        if self.postgres is not None:
            return True
        host = make_url(self.database_url).host if self.database_url else None
        return host in (None, "", "127.0.0.1", "localhost", "::1")

    # -- services -------------------------------------------------------------------------------
    def service_env(self, sp: ServiceProcess) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "ORDERFLOW_HTTP_PORT": str(sp.port),
            "ORDERFLOW_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        })
        # the broker's kind chooses the clients' defaults (orderflow.connector.broker_profile)
        env["ORDERFLOW_KAFKA_BROKER"] = self.broker_kind
        # service credentials (orderflow.runtime.service_auth): the console signs its calls to
        # the services with this stack's own key, generated once into its folder (mode 0600);
        # ``extra_env`` may give another. orderflow.testing.service_auth reads the same key.
        from orderflow.runtime.service_auth import KEY_VARIABLE, secret_file

        env[KEY_VARIABLE] = secret_file(self.root / "service-key")
        if sp.name in SIDE_CONSUMERS:
            # on one machine the order flow's services take the cores first; these catch up
            env.setdefault("ORDERFLOW_NICE", str(SIDE_CONSUMER_NICE))
            for name, value in SIDE_CONSUMER_MALLOC_ENV.items():
                env.setdefault(name, value)
            if self.database_on_this_machine:  # and so does their work in the database
                env.setdefault("ORDERFLOW_DB_BACKEND_NICE", env["ORDERFLOW_NICE"])
        if sp.name == "intake":
            # the channel order API's keys, one per demo channel and store, generated once
            env.setdefault("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE", str(self.channel_keys_file()))
        if sp.name == "console":
            ports = {p.name: p.port for p in self.processes if p.replica == 0}
            env.setdefault("ORDERFLOW_CONSOLE_TOKEN_FILE", str(self.root / "console-token"))
            # the documented development users: here, and only where a dev stack says so
            env.setdefault("ORDERFLOW_CONSOLE_DEV_USERS", "true")
            if "review" in ports:
                env["ORDERFLOW_CONSOLE_REVIEW_URL"] = f"http://127.0.0.1:{ports['review']}"
            env["ORDERFLOW_CONSOLE_SERVICE_URLS"] = json.dumps(
                {name: f"http://127.0.0.1:{port}" for name, port in ports.items()})
            # the order desk posts to intake's channel order API with the key intake has for it
            desk = self.intake_desk_key(env)
            if desk is not None:
                env.setdefault("ORDERFLOW_CONSOLE_DESK_KEY", desk)
        env.update(self.extra_env)
        return env

    def channel_keys_file(self) -> Path:
        """``channel-keys.json`` in the stack's folder: a key of the channel order API for each
        demo channel (and the simulators' stores), each kept in a file of its own (mode 0600).
        Written only when its content would change (a running intake may be reading it), and
        then whole: a new file (mode 0600) renamed over the old."""
        from orderflow.runtime.service_auth import secret_file

        keys = {name: secret_file(self.root / "channel-keys" / name.replace("/", "@"))
                for name in DEV_CHANNEL_KEYS}
        path = self.root / "channel-keys.json"
        content = json.dumps(keys, indent=2)
        try:
            if path.read_text() == content:
                return path
        except (OSError, UnicodeDecodeError):
            pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        tmp.replace(path)
        return path

    def intake_desk_key(self, env: dict[str, str]) -> str | None:
        """The ``desk`` key intake is given in ``env`` (a process's environment): the one of
        ``ORDERFLOW_INTAKE_CHANNEL_KEYS`` (which wins over the file's), else of the keys file
        (the caller's, or this stack's own)."""
        try:
            given = json.loads(env.get("ORDERFLOW_INTAKE_CHANNEL_KEYS") or "{}")
            if isinstance(given, dict) and isinstance(given.get("desk"), str):
                return str(given["desk"])
            path = env.get("ORDERFLOW_INTAKE_CHANNEL_KEYS_FILE")
            keys = json.loads(Path(path).read_text() if path
                              else self.channel_keys_file().read_text())
        except (OSError, ValueError):
            return None
        desk = keys.get("desk") if isinstance(keys, dict) else None
        return desk if isinstance(desk, str) else None

    def start_services(self) -> None:
        from orderflow.devstack.processes import free_port

        for name in self.services:
            for replica in range(self.replicas.get(name, 1)):
                preferred = HTTP_PORTS.get(name, 0) + 100 * replica if self.fixed_ports else 0
                sp = ServiceProcess(name, replica, free_port(preferred))
                self.processes.append(sp)
                self.launch(sp)

    def launch(self, sp: ServiceProcess) -> None:
        # the service's own __main__, at the priority its settings give (devstack.launch)
        sp.proc = spawn([sys.executable, "-m", "orderflow.devstack.launch", sp.name],
                        log_path=self.root / "logs" / f"{sp.label}.log", env=self.service_env(sp))
        sp.started_at = time.monotonic()

    def healthy(self, sp: ServiceProcess) -> bool:
        if sp.proc is None or sp.proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{sp.port}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 90) -> None:
        def all_up() -> bool:
            for sp in self.processes:
                if sp.proc is not None and sp.proc.poll() is not None:
                    log = self.root / "logs" / f"{sp.label}.log"
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                    raise RuntimeError(f"service {sp.label} exited with {sp.proc.returncode}:\n{tail}")
            return all(self.healthy(sp) for sp in self.processes)

        wait_until(all_up, timeout=timeout, what="every service to report healthy", interval=0.3)

    def supervise(self) -> list[str]:
        """Restart crashed services (with a pause); returns the labels restarted."""
        restarted = []
        for sp in self.processes:
            if sp.proc is not None and sp.proc.poll() is not None:
                if time.monotonic() - sp.started_at < 2.0 * (sp.restarts + 1):
                    continue
                sp.restarts += 1
                self.launch(sp)
                restarted.append(sp.label)
        return restarted

    def find(self, label: str) -> ServiceProcess:
        for sp in self.processes:
            if sp.label == label:
                return sp
        raise KeyError(label)

    # -- feeding the stack ------------------------------------------------------------------------
    @property
    def kafka(self) -> KafkaSettings:
        if self.admin_kafka is not None:
            return self.admin_kafka
        return KafkaSettings(bootstrap_servers=self.bootstrap, broker=self.broker_kind)

    async def publish_and_wait(self, events: list[Event], timeout: float = 120.0, *,
                               publisher: KafkaSettings | None = None) -> None:
        """Publish events (as ``publisher``, else as the stack's own client) and wait until
        every running service that consumes their topics has committed past them (targets from
        the producer's delivery reports)."""
        from orderflow.connector import OrderPusher

        async with OrderPusher(publisher or self.kafka, producer_name="devstack") as pusher:
            metadata = await pusher.publish(events)
        targets: dict[str, dict[TopicPartition, int]] = defaultdict(dict)
        for md in metadata:
            tp = TopicPartition(md.topic, md.partition)
            targets[md.topic][tp] = max(targets[md.topic].get(tp, 0), md.offset + 1)
        for service in self.services:
            wanted = {tp: off for topic in subscriptions_of(service)
                      for tp, off in targets.get(topic, {}).items()}
            if wanted:
                await wait_consumed(self.kafka, f"orderflow.{service}", wanted, timeout=timeout)

    async def load_demo_master_data(self, *, publisher: KafkaSettings | None = None) -> int:
        from orderflow.devstack.masterdata import DEMO_DATA, parse_file

        events: list[Event] = []
        for kind in ("products", "customers", "warehouses", "stock"):
            events += parse_file(kind, DEMO_DATA / f"{kind}.csv").events
        await self.publish_and_wait(events, publisher=publisher)
        return len(events)

    # -- state and shutdown ---------------------------------------------------------------------
    def write_state(self, path: Path, extra: dict[str, object] | None = None) -> None:
        """The state file other commands and tests read; ``extra`` adds keys (``ready``...)."""
        write_json_atomically(path, {
            "supervisor_pid": os.getpid(),
            "database_url": self.database_url,
            "kafka_bootstrap_servers": self.bootstrap,
            "broker": self.broker_kind,
            "embedded": self.embedded,
            "services": {sp.label: {"pid": sp.proc.pid if sp.proc else None, "port": sp.port}
                         for sp in self.processes},
            **(extra or {}),
        })

    def stop_services(self) -> None:
        for sp in self.processes:  # ask all at once, then wait for each
            if sp.proc is not None and sp.proc.poll() is None:
                sp.proc.terminate()
        for sp in self.processes:
            stop(sp.proc, timeout=30)

    def stop(self) -> None:
        self.stop_services()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
