"""One pass-through hop for the ceiling measurement: consume a topic in batches as a service does
(a consumer group, manual commits), send every message on unchanged to the next topic, wait for
the broker's acknowledgements, then commit the batch's offsets explicitly. No decoding, no
database, no outbox: what is left is the cost of the broker and the Kafka client.

    python -m bench.passthrough --bootstrap HOST:PORT --broker kafka|tansu --source A --target B \
        --group G
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from orderflow.runtime.settings import KafkaSettings


async def run(kafka: KafkaSettings, source: str, target: str, group: str,
              ready_file: Path | None, max_records: int) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    # the same client settings as the services' consumers and outbox producers (the group's
    # session, acks=all and idempotence from the broker's profile)
    consumer = AIOKafkaConsumer(source, **kafka.client_kwargs(), group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=kafka.session_timeout_ms,
                                heartbeat_interval_ms=kafka.heartbeat_interval_ms)
    producer = AIOKafkaProducer(**kafka.producer_kwargs(), linger_ms=2, max_batch_size=256 * 1024,
                                max_request_size=2 * 1024 * 1024)
    await producer.start()
    await consumer.start()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=20, max_records=max_records)
            if ready_file is not None and consumer.assignment():
                ready_file.write_text("ready")  # noqa: ASYNC240 - once, before any load
                ready_file = None
            if not batches:
                continue
            futures = []
            offsets: dict[TopicPartition, int] = {}
            for tp, records in batches.items():
                for r in records:
                    futures.append(await producer.send(target, value=r.value, key=r.key,
                                                       headers=list(r.headers)))
                offsets[tp] = records[-1].offset + 1
            await asyncio.gather(*futures)
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--broker", choices=("kafka", "tansu"), required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--max-records", type=int, default=500)
    args = parser.parse_args()
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, broker=args.broker)
    asyncio.run(run(kafka, args.source, args.target, args.group, args.ready_file,
                    args.max_records))


if __name__ == "__main__":
    main()
