"""The YAML loaders' checks (search spaces, selection spaces): every error is one line naming the file,
the key path and the reason, e.g. `space.yaml: sweep[0].bits[1]: must be at most 8, got 12`.

A value that is a config field's (steps, a width, bits, algo_config) is checked by the config itself
(qsearch/config.py): `value` and `config` only add the key path, so a bound is written once and the
command line refuses the same values. `integer` is for the files' own keys (seeds' count, search:).
"""
from __future__ import annotations

from qsearch.config import FieldError, check_int, check_value
from qsearch.errors import QsearchError


class Err:
    """Builds the one-line error: file, key, reason."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, key: str, reason: str) -> QsearchError:
        return QsearchError(f"{self.path}: {key}: {reason}")


def integer(err, key, v, lo=None, hi=None):
    """An integer from `lo` to `hi` (None: unbounded)."""
    try:
        return check_int(key, v, lo, hi)
    except FieldError as e:
        raise err(key, e.reason) from None


def field_value(err, key, name, v, kind="int"):
    """A value for the config field `name`, checked as the config checks it (qsearch.config.check_value)."""
    try:
        return check_value(name, v, kind)
    except FieldError as e:
        raise err(key, e.reason) from None


def bit_width(err, key, v):
    """A bit width (QuantBits' bounds)."""
    return field_value(err, key, "bits", v)


def config_of(err, key, cls, values: dict):
    """The config `cls(**values)`; a refused field is named by its key path (`algo_config.tau`)."""
    try:
        return cls(**values)
    except FieldError as e:
        raise err(f"{key}.{e.field}", e.reason) from None
    except QsearchError as e:  # a check across fields
        raise err(key, str(e)) from None


def one_or_more(err, key, v, item):
    """A scalar or a non-empty list of scalars, each checked by item(key, value)."""
    values = v if isinstance(v, list) else [v]
    if not values:
        raise err(key, "must not be an empty list")
    return [item(f"{key}[{i}]" if isinstance(v, list) else key, x) for i, x in enumerate(values)]


def mapping(err, key, v, allowed):
    """A mapping whose keys are all in `allowed`."""
    if not isinstance(v, dict):
        raise err(key, f"must be a mapping, got {type(v).__name__}")
    for k in v:
        if k not in allowed:
            raise err(f"{key}.{k}" if key else str(k), f"unknown key; allowed: {', '.join(sorted(allowed))}")
    return v
