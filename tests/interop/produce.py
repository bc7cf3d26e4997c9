"""Produce an NDJSON file's lines with kafka-python (no librdkafka): key = unit_id.

usage: produce.py BOOTSTRAP TOPIC FILE [COMPRESSION]

COMPRESSION: none (default), gzip, lz4, zstd or snappy (kafka-python's codecs; lz4,
zstd and snappy need the Python modules lz4, zstandard and python-snappy).
"""
import json
import sys

from kafka import KafkaProducer


def key_of(line: bytes):
    try:
        value = json.loads(line)
    except Exception:
        return None
    if isinstance(value, dict) and isinstance(value.get("unit_id"), str):
        return value["unit_id"].encode()
    return None


def main():
    bootstrap, topic, path = sys.argv[1:4]
    compression = sys.argv[4] if len(sys.argv) > 4 else "none"
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        max_request_size=16 * 1024 * 1024,
        compression_type=None if compression == "none" else compression,
    )
    sent = 0
    futures = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n").rstrip(b"\r")
            if not line.strip():
                continue
            futures.append(producer.send(topic, value=line, key=key_of(line)))
            sent += 1
    producer.flush()
    for fut in futures:
        fut.get(timeout=60)  # raises if a message was not acknowledged
    print(f"sent {sent}")


if __name__ == "__main__":
    main()
