"""Typed errors: exit codes in one table, and library messages shortened without cutting words."""

from vecmetric.errors import EXIT_CODES, VecmetricError, reason


def test_reason_is_the_first_line_shortened_at_a_word_boundary():
    assert reason(RuntimeError("\n  first line  \nsecond line")) == "first line"
    long = RuntimeError("An error happened while trying to locate the file on the Hub " * 5)
    short = reason(long, 60)
    assert len(short) <= 60 and short.endswith("…")
    assert short[:-1] == "An error happened while trying to locate the file on the"  # whole words only
    assert reason(ValueError("")) == "ValueError"


def test_every_error_class_has_a_documented_exit_code():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    for cls in [VecmetricError, *subclasses(VecmetricError)]:
        assert cls.exit_code in EXIT_CODES, cls
