#!/usr/bin/env python3
"""A department subscribing to onething events (the worked example of docs/events.md).

It connects as the read-only user, reads a stream through its own durable pull consumer
(named like the user, as the permissions require), decodes each CloudEvent's protobuf
payload by its `ce-type`, prints one JSON line per event, and acks it. Run it again and the
durable consumer carries on where it stopped; --start-sequence replays from a sequence.

Generate the Python classes of the protos once:
    python -m grpc_tools.protoc -I proto --python_out=gen $(find proto/onething -name '*.proto')
then:
    python docs/examples/subscriber.py --generated gen --user external --password ... \\
        --stream ONETHING_HOUSEHOLD --subject 'onething.household.v1.>' --count 10
"""

import argparse
import asyncio
import importlib
import json
import pathlib
import sys


def load_messages(generated: pathlib.Path):
    """Imports every generated *_pb2 module so the descriptor pool knows every type."""
    sys.path.insert(0, str(generated))
    for path in generated.rglob("*_pb2.py"):
        module = ".".join(path.relative_to(generated).with_suffix("").parts)
        importlib.import_module(module)


def decode(ce_type: str, payload: bytes):
    from google.protobuf import descriptor_pool, json_format, message_factory

    descriptor = descriptor_pool.Default().FindMessageTypeByName(ce_type)
    message = message_factory.GetMessageClass(descriptor)()
    message.ParseFromString(payload)
    return json_format.MessageToDict(message)


async def run(args) -> int:
    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    nc = await nats.connect(args.url, user=args.user or None, password=args.password or None)
    js = nc.jetstream()
    config = ConsumerConfig(filter_subject=args.subject)
    if args.start_sequence:
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = args.start_sequence
    sub = await js.pull_subscribe(args.subject, durable=args.durable, stream=args.stream, config=config)
    seen = 0
    while seen < args.count:
        try:
            batch = await sub.fetch(args.count - seen, timeout=args.timeout)
        except asyncio.TimeoutError:
            break
        for msg in batch:
            headers = msg.headers or {}
            if headers.get("ce-specversion") != "1.0" or headers.get("content-type") != "application/protobuf":
                await msg.term()  # Not a onething event: never retried.
                continue
            event = {
                "sequence": msg.metadata.sequence.stream,
                "subject": msg.subject,
                "id": headers.get("ce-id"),
                "type": headers.get("ce-type"),
                "source": headers.get("ce-source"),
                "time": headers.get("ce-time"),
                "payload": decode(headers["ce-type"], msg.data),
            }
            print(json.dumps(event, ensure_ascii=False), flush=True)
            # A real subscriber acks after its own transaction commits, and keeps ce-id
            # to recognise a redelivery.
            await msg.ack()
            seen += 1
    await nc.close()
    return 0 if seen >= args.count else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="nats://127.0.0.1:4222")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--stream", required=True)
    p.add_argument("--subject", default=">")
    p.add_argument("--durable", default="external", help="must equal the user name for outside users")
    p.add_argument("--count", type=int, default=10, help="stop after this many events")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--start-sequence", type=int, default=0)
    p.add_argument("--generated", type=pathlib.Path, required=True, help="folder of the generated *_pb2 modules")
    args = p.parse_args()
    load_messages(args.generated)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
