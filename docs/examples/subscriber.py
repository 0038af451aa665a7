#!/usr/bin/env python3
"""A department subscribing to onething events (the worked example of docs/events.md).

It connects as its department's NATS user (deploy/nats/departments.toml), with that user's
own inbox prefix (`_INBOX.<user>`, the only inbox it may subscribe to), and reads each
subject it is entitled to through a durable pull consumer of its own, named as the
permissions require (`<user>-` and the subject after `onething.`, `.` as `-`, `*` as
`any`) and filtered on that subject alone. It decodes each CloudEvent's protobuf payload by
its `ce-type`, prints one JSON line per event, and acks it. Run it again and the durable consumers carry on where they stopped;
--start-sequence replays from a sequence.

Generate the Python classes of the protos once:
    python -m grpc_tools.protoc -I proto --python_out=gen $(find proto/onething -name '*.proto')
then:
    python docs/examples/subscriber.py --generated gen --user social_security --password ... \\
        --stream ONETHING_HOUSEHOLD --subject onething.household.v1.person.born \\
        --subject onething.household.v1.person.deceased --count 10
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


def consumer_name(user: str, subject: str) -> str:
    """The durable name deploy/nats/auth.conf allows `user` for `subject`."""
    tokens = [{"*": "any", ">": "all"}.get(t, t) for t in subject.split(".")[1:]]
    return "-".join([user or "subscriber"] + tokens)


async def run(args) -> int:
    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    options = {"inbox_prefix": f"_INBOX.{args.user}"} if args.user else {}
    nc = await nats.connect(args.url, user=args.user or None, password=args.password or None, **options)
    js = nc.jetstream()
    subs = []
    for subject in args.subject:
        # One consumer per subject: the permission to create it names its filter.
        config = ConsumerConfig(filter_subject=subject)
        if args.start_sequence:
            config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = args.start_sequence
        durable = consumer_name(args.user, subject)
        subs.append(await js.pull_subscribe(subject, durable=durable, stream=args.stream, config=config))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.timeout
    seen, turn = 0, 0
    while seen < args.count and loop.time() < deadline:
        sub = subs[turn % len(subs)]
        turn += 1
        try:
            # Short waits, so a quiet subject does not hold up the others.
            batch = await sub.fetch(args.count - seen, timeout=max(0.1, min(1.0, deadline - loop.time())))
        except asyncio.TimeoutError:
            continue
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
    p.add_argument("--subject", action="append", required=True, help="an entitled subject; repeat for more")
    p.add_argument("--count", type=int, default=10, help="stop after this many events")
    p.add_argument("--timeout", type=float, default=10.0, help="give up after this many seconds")
    p.add_argument("--start-sequence", type=int, default=0)
    p.add_argument("--generated", type=pathlib.Path, required=True, help="folder of the generated *_pb2 modules")
    args = p.parse_args()
    load_messages(args.generated)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
