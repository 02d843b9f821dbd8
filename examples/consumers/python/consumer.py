#!/usr/bin/env python3
"""Prints one line per WhatsApp message and status that qikchat-bridge wrote to Kafka.

Uses only the records' contract (docs/asyncapi.yaml): the `event` and `message-id` headers and
the JSON body Qikchat sent, which the bridge stores byte for byte.

Environment:
  KAFKA_BOOTSTRAP_SERVERS  host:port,...              (default localhost:9092)
  KAFKA_GROUP_ID           consumer group             (default qikchat-example-python)
  TOPIC_PREFIX             the bridge's --topic-prefix (default empty)
  MAX_RECORDS              exit 0 after this many records; 0 or unset: run until Ctrl-C/SIGTERM
"""

import json
import math
import os
import re
import signal
import sys

from confluent_kafka import Consumer, KafkaError, KafkaException

IN = "whatsapp:message:in"
STATUS = "whatsapp:message:status"


def quoted(text):
    """A JSON string literal: unambiguous on one line, whatever the customer typed."""
    return json.dumps(text, ensure_ascii=False)


def json_text(value):
    """Any value as one line of JSON, as JavaScript's JSON.stringify writes it, so that both
    examples print the same line; an object or array as `{...}` or `[...]`, since the two
    languages order an object's keys differently (JavaScript puts integer-like ones first)."""
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return json.dumps(value, ensure_ascii=False)


def number(digits):
    """A JSON integer. Python refuses to convert one of more than 4300 digits (a guard against
    slow conversions), which would skip a record for a field this example never reads; as
    JavaScript does, such a number is read as a float instead."""
    return int(digits) if len(digits) <= 4300 else float(digits)


def text_of(value):
    """A body's value inside a printed text: a string as it is, null or missing as nothing,
    anything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json_text(value)


def first_text(*values):
    """The first value that is a non-empty string (a caption may be missing, empty or not text)."""
    return next((v for v in values if isinstance(v, str) and v), None)


PLAIN = re.compile(r"[A-Za-z0-9+._:@-]+")


def field(value):
    """A body's value as printed: a plain token as it is; anything else (white space, a control
    character such as CR or LF, non-ASCII, empty, missing, not a string) as a JSON literal, so
    that a line never breaks and one field never looks like two."""
    if isinstance(value, str) and PLAIN.fullmatch(value):
        return value
    return json_text(value)


def message_text(message):
    """The human-readable part of an incoming message, or None (audio, sticker, unknown types)."""
    kind = message.get("type")
    if not isinstance(kind, str):  # any shape is valid JSON the bridge stores: never crash on it
        return None
    content = message.get(kind)
    if kind == "contacts" and isinstance(content, list):
        names = [c.get("name") for c in content if isinstance(c, dict)]
        names = [n.get("formatted_name") for n in names if isinstance(n, dict)]
        return ", ".join(n for n in names if isinstance(n, str)) or None
    if not isinstance(content, dict):
        return None
    if kind == "text":
        return content.get("body")
    if kind in ("image", "video", "document"):
        return first_text(content.get("caption"), content.get("filename"))
    if kind == "location":
        return first_text(content.get("name"), content.get("address"))
    if kind == "interactive":
        reply_kind = content.get("type")
        reply = content.get(reply_kind) if isinstance(reply_kind, str) else None
        return reply.get("title") if isinstance(reply, dict) else None
    if kind == "button":
        return content.get("text")
    if kind == "reaction":
        return content.get("emoji")
    return None


def describe(headers, body):
    """One output line for a record, or None for events this example does not show."""
    event = headers.get("event")
    payload = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(payload, dict):
        return None
    if event == IN:
        message = payload.get("message")
        if not isinstance(message, dict):
            message = {}
        line = f"in  from={field(message.get('from'))} type={field(message.get('type'))}"
        text = message_text(message)
        if isinstance(text, str) and text:
            line += f" text={quoted(text)}"
        return line
    if event == STATUS:
        to = payload.get("to")
        if isinstance(to, str):
            to = to.lstrip("+")
        # The header when the bridge wrote one; it leaves it out for an id with a control
        # character, which the body still has.
        message_id = headers.get("message-id", payload.get("id"))
        line = f"status to={field(to)} status={field(payload.get('status'))} id={field(message_id)}"
        errors = payload.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            parts = (text_of(errors[0].get("code")), text_of(errors[0].get("title")))
            line += f" error={quoted(' '.join(p for p in parts if p))}"
        return line
    return None


def main():
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    prefix = os.environ.get("TOPIC_PREFIX", "")
    max_records = int(os.environ.get("MAX_RECORDS") or 0)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": os.environ.get("KAFKA_GROUP_ID", "qikchat-example-python"),
            # A new group starts at the beginning of both topics; a known one where it left off.
            "auto.offset.reset": "earliest",
            # At least once: an offset is stored (and then committed, every 5 s and at close)
            # only after its record was handled, not when poll() returned it. With librdkafka's
            # default a record that failed would be committed by close() and never seen again.
            "enable.auto.offset.store": False,
        }
    )
    consumer.subscribe([prefix + "whatsapp.message.in", prefix + "whatsapp.message.status"])

    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    seen = 0
    try:
        while not stopping and (max_records == 0 or seen < max_records):
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().fatal():
                    raise KafkaException(msg.error())
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    print(f"kafka: {msg.error()}", file=sys.stderr)
                continue
            seen += 1
            headers = {
                k: (v or b"").decode("utf-8", errors="replace") for k, v in (msg.headers() or [])
            }
            try:
                body = json.loads(msg.value(), parse_int=number)
            except (ValueError, TypeError) as e:  # not JSON, or no value at all
                print(f"skipped {msg.topic()}/{msg.partition()}@{msg.offset()}: {e}", file=sys.stderr)
                body = None
            if body is not None:
                line = describe(headers, body)
                if line is not None:
                    print(line, flush=True)
            # Handled (printed, or deliberately skipped): only now may its offset be committed.
            # An exception above leaves it unstored, so the record is read again after a restart.
            consumer.store_offsets(message=msg)
    finally:
        consumer.close()  # commits the offsets stored above, leaves the group
    return 0


if __name__ == "__main__":
    # A customer's text can hold anything, lone surrogates included: never crash on printing it.
    sys.stdout.reconfigure(errors="backslashreplace")
    sys.exit(main())
