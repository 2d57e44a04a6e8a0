"""Coverage-guided fuzzing of every parser with atheris (libFuzzer), beside the Hypothesis
suite in tests/test_parser_fuzz.py: libFuzzer follows the branches the input reaches, which
finds deep paths in the XML, feed and protobuf parsers that random mutation rarely does.

    make fuzz                       # every parser, 60 s each (FUZZ_SECONDS=600 for longer)
    .venv/bin/python fuzz/fuzz_parsers.py cap -max_total_time=60

The contract under test: for any bytes, a parser returns notices or raises SourceError with a
message; anything else (another exception, a hang, a crash) is a finding, saved by libFuzzer
as crash-<hash> in the current directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from clarion.sources import parsers
    from clarion.sources.base import SourceError

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
sys.path.insert(0, str(Path(__file__).parent.parent))  # tests.test_parser_fuzz
SEEDS = {
    "cap": ["cap/*.cap", "cap/*.xml"],
    "feed": ["feeds/*"],
    "nws": ["nws-api/*"],
    "gtfsrt": ["gtfsrt/*"],
    "statuspage": ["statuspage/*"],
    "push": [],
}
CONTENT_TYPES = {
    "cap": "application/cap+xml",
    "feed": "",
    "nws": "application/geo+json",
    "gtfsrt": "application/x-protobuf",
    "statuspage": "application/json",
    "push": "application/json",
}


def main() -> None:
    kind = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in parsers() else None
    if kind is None:
        sys.exit(f"usage: fuzz_parsers.py {{{','.join(sorted(parsers()))}}} [libFuzzer options]")
    parse = parsers()[kind]
    ctype = CONTENT_TYPES.get(kind, "")

    def one(data: bytes) -> None:
        try:
            parse(data, ctype)
        except SourceError as exc:
            assert str(exc), "a SourceError must say what is wrong"

    corpus = Path(f"fuzz/corpus/{kind}")
    corpus.mkdir(parents=True, exist_ok=True)
    for pattern in SEEDS.get(kind, []):
        for f in FIXTURES.glob(pattern):
            if f.is_file() and f.stat().st_size < 200_000:
                (corpus / f.name).write_bytes(f.read_bytes())
    # Structure-aware seeds: deep nesting, huge numbers, NaN, NUL, long strings and odd
    # encodings, which random bytes of a few KB never reach (3 KB of "[" crashed three
    # parsers). libFuzzer mutates from these; -max_len is raised so that they are not cut.
    from tests.test_parser_fuzz import STRUCTURAL

    for i, body in enumerate(STRUCTURAL):
        if len(body) < 300_000:
            (corpus / f"structural-{i:02d}").write_bytes(body)
    options = [a for a in sys.argv[2:]]
    if not any(a.startswith("-max_len=") for a in options):
        options.append("-max_len=200000")
    atheris.Setup([sys.argv[0], *options, str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
