"""Events x routes → the messages each sink must take. Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consumer import formats
from consumer.config import Config, RouteConfig
from consumer.errors import PermanentDeliveryError
from consumer.events import ChangeEvent, StreamContext
from consumer.filters import EventFilter, compile_patterns, parse_filter_criteria
from consumer.formats import JSON, Renderer, plain, to_lambda_record
from consumer.sinks.base import Failure, Message

DEFAULT_ROUTE = "default"


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    sinks: tuple[str, ...]
    render: Renderer
    content_type: str
    matches: Callable[[ChangeEvent], bool]
    check_json: bool = False  # see formats.must_check_json


@dataclass(slots=True)
class Routed:
    """A batch after routing: per sink the messages in stream order, and what could not even be rendered."""

    by_sink: dict[str, list[Message]] = field(default_factory=dict)
    unrenderable: list[Failure] = field(default_factory=list)
    unmatched: int = 0
    dropped: list[ChangeEvent] = field(default_factory=list)  # matched no route, and `unmatched` is "drop"


class Router:
    def __init__(self, routes: Sequence[Route], unmatched: Route | None) -> None:
        self._routes = tuple(routes)
        self._unmatched = unmatched

    @classmethod
    def from_config(cls, config: Config, context: StreamContext) -> Router:
        if not config.routes:
            return cls.to_all([s.name for s in config.sinks], context)
        routes = {route.name: _route(route, context) for route in config.routes}
        return cls(list(routes.values()), routes.get(config.unmatched))

    @classmethod
    def to_all(cls, sink_names: Sequence[str], context: StreamContext) -> Router:
        """Every event to every sink, in the plain format: what a configuration without routes means."""
        return cls([_route(RouteConfig(name=DEFAULT_ROUTE, sinks=tuple(sink_names)), context)], None)

    def route(self, events: Sequence[ChangeEvent]) -> Routed:
        routed = Routed()
        for event in events:
            try:
                matched = [route for route in self._routes if route.matches(event)]
            except Exception as error:  # noqa: BLE001 - a record the filters cannot read is its own failure
                # A malformed image is found when a filter first reads it (images decode on first use). Which
                # routes match cannot be known, so the record goes where failures go, whole, never dropped.
                problem = PermanentDeliveryError(f"cannot filter: {type(error).__name__}: {error}")
                routed.unrenderable.append(Failure(Message(event, "", "", JSON), problem))
                continue
            if not matched:
                routed.unmatched += 1
                if self._unmatched is None:
                    routed.dropped.append(event)
                    continue
                matched = [self._unmatched]
            # Each sink takes an event once, through the first matching route (in configuration order): a second
            # copy would carry the same eventID as FIFO deduplication id and idempotency key and be dropped as a
            # duplicate downstream, or reach a Lambda handler twice in one batch, which Lambda never does.
            taken: set[str] = set()
            for route in matched:
                _add(routed, route, event, taken)
        return routed


def _add(routed: Routed, route: Route, event: ChangeEvent, taken: set[str]) -> None:
    sinks = [sink for sink in route.sinks if sink not in taken]
    if not sinks:
        return
    taken.update(sinks)
    try:
        body = route.render(event)
        if route.check_json:
            json.loads(body)  # a JSON template with unescaped data would send broken JSON
    except Exception as error:  # noqa: BLE001 - any failure of a user's template is this event's failure
        # It fails the same way on every retry (e.g. new.name on a REMOVE, a name with a quote in a JSON template).
        problem = PermanentDeliveryError(f"route {route.name!r}: cannot render: {type(error).__name__}: {error}")
        routed.unrenderable.append(Failure(Message(event, route.name, "", route.content_type), problem))
        return
    for sink in sinks:
        routed.by_sink.setdefault(sink, []).append(Message(event, route.name, body, route.content_type))


def _route(config: RouteConfig, context: StreamContext) -> Route:
    checks: list[Callable[[ChangeEvent], bool]] = []
    spec = config.filter
    if spec.patterns or spec.filter_criteria is not None:
        lambda_filters: list[EventFilter] = []
        if spec.patterns:
            lambda_filters.append(compile_patterns(spec.patterns))
        if spec.filter_criteria is not None:
            lambda_filters.append(parse_filter_criteria(spec.filter_criteria))

        def lambda_shape_matches(event: ChangeEvent) -> bool:
            record = to_lambda_record(event, context, private=False)  # read, never edited: no copy
            return any(f.matches(record) for f in lambda_filters)

        checks.append(lambda_shape_matches)
    if spec.changed:
        wanted = frozenset(spec.changed)
        checks.append(lambda event: not wanted.isdisjoint(event.changed))
    if spec.where:
        plain_filter = compile_patterns(spec.where)
        checks.append(lambda event: plain_filter.matches(plain(event)))
    content_type = formats.content_type(config.format, config.content_type)
    return Route(
        name=config.name,
        sinks=config.sinks,
        render=formats.renderer(config.format, context, config.template),
        content_type=content_type,
        matches=lambda event: all(check(event) for check in checks),
        check_json=formats.must_check_json(config.format, content_type),
    )
