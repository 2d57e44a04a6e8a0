"""A platform and an input kind that exist only in the tests: each declared in this one module,
as a connector module of Clarion's own would be (`register()` stands for the registry line).

The toy platform records what it is sent in `SENT`; the toy source reads CAP documents."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from clarion import registry
from clarion.channels.base import (
    ChannelConnector,
    Deps,
    Outgoing,
    Post,
    Profile,
    Receipt,
    RenderContext,
    Rendered,
)
from clarion.configtypes import ChannelConfigBase, SecretRef, SourceConfigBase
from clarion.model import Notice
from clarion.render.counting import COUNTERS
from clarion.render.text import compose
from clarion.sources.base import PolledSource, Rejected, SourceConnector
from clarion.sources.cap import parse_cap

SENT: list[dict[str, Any]] = []


class ToyChannelConfig(ChannelConfigBase):
    """A toy platform that only the tests know."""

    kind: Literal["toy"]
    url: str
    token: SecretRef
    shout: bool = False  # upper-case every post


class ToyChannel:
    kind = "toy"
    profile = Profile(limit=120, counting="graphemes", threads=True)

    def __init__(self, name: str, token: str, shout: bool = False, languages=()) -> None:  # type: ignore[no-untyped-def]
        self.name = name
        self.token = token
        self.shout = shout
        self.languages = tuple(languages)

    def render(self, notice: Notice, ctx: RenderContext) -> Rendered:
        r = compose(
            notice,
            limit=120,
            count=COUNTERS["graphemes"],
            languages=self.languages or ctx.languages,
            permalink=ctx.permalink,
        )
        return Rendered(posts=(Post(r.text.upper() if self.shout else r.text, r.count),))

    def send(self, out: Outgoing) -> Receipt:
        SENT.append({"channel": self.name, "token": self.token, "text": out.rendered.text})
        return Receipt(post_id=f"toy:{out.id}")

    def close(self) -> None:
        pass


def _build(cfg: ToyChannelConfig, deps: Deps) -> ToyChannel:
    return ToyChannel(deps.name, deps.secret("token", cfg.token), cfg.shout, deps.languages)


TOY = ChannelConnector(
    kind="toy",
    config=ToyChannelConfig,
    profile=ToyChannel.profile,
    build=_build,
    offline=lambda parts: ToyChannel("toy", "-"),
)


class ToySourceConfig(SourceConfigBase):
    """A toy input kind that only the tests know (CAP documents underneath)."""

    kind: Literal["toysrc"]


class ToySource(PolledSource):
    kind = "toysrc"

    def parse(
        self, body: bytes, content_type: str, rejected: list[Rejected] | None = None
    ) -> list[Notice]:
        return parse_cap(body)


TOYSRC = SourceConnector(
    kind="toysrc",
    config=ToySourceConfig,
    parse=lambda body, content_type: parse_cap(body),
    build=lambda name, cfg: ToySource(name, cfg.url, cfg.max_bytes),
)


@contextmanager
def register() -> Iterator[None]:
    with registry.registered(channel=TOY, source=TOYSRC):
        yield
