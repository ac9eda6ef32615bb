"""Build every sink and the on-failure destination once, sending nothing, before any child would.

A sink whose constructor fails (a header the sink sets itself, an unreadable CA bundle, an endpoint botocore
refuses) would otherwise crash every record-processor child as it starts, and with it the JVM: one line naming the
sink at start is the better answer.
"""

from __future__ import annotations

from consumer.config import Config, HandlerSinkConfig
from consumer.deadletter import build_destination
from consumer.errors import StartupError
from consumer.events import StreamContext
from consumer.sinks import build_sink
from consumer.sinks.handler import check_handler

PLACEHOLDER_STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/check-config/stream/check-config"


def build_sinks_once(config: Config, stream_arn: str | None, *, handlers: bool = True) -> None:
    """Construct and close each sink and the destination; raise StartupError naming the first that fails.

    `stream_arn` is the resolved stream (the children's context), or None before it is known (check-config: a
    placeholder then, only its shape matters to the constructors). `handlers=False` leaves out the handler sinks,
    whose check imports the handler module (in a throwaway worker process) and so runs its code.
    """
    source = config.source
    context = StreamContext(
        stream_arn=stream_arn or PLACEHOLDER_STREAM_ARN, region=source.region, endpoint_url=source.endpoint_url
    )
    for index, sink_config in enumerate(config.sinks):
        if not handlers and isinstance(sink_config, HandlerSinkConfig):
            continue
        where = f"sinks.{index} ({sink_config.type} {sink_config.name!r})"
        try:
            build_sink(sink_config, context).close()
            if isinstance(sink_config, HandlerSinkConfig):
                check_handler(sink_config)
        except Exception as error:  # any failure here is one a child would die of
            raise StartupError(f"{where}: {_one_line(error)}") from error
    if config.on_failure is not None:
        try:
            build_destination(config.on_failure, context).close()
        except Exception as error:
            raise StartupError(f"on_failure ({config.on_failure.type}): {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    text = str(error) if isinstance(error, StartupError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())
