"""The text after ``dscribe:``: ``NAME`` or ``NAME(key=literal, ...)``, read without eval.

:func:`parse_call` reads the argument of a ``dscribe:`` featurizer name with
:func:`ast.parse` in ``eval`` mode and accepts exactly one shape: a bare name,
or a call of a bare name with keyword arguments whose values are Python
literals (numbers, strings, ``True``/``False``/``None``, and lists, tuples
and dicts of them), each read by :func:`ast.literal_eval`. Positional
arguments, ``**mapping``, attribute access, names as values and any other
expression are refused with a :class:`~xenonscale.errors.ConfigError`.
:func:`render_call` writes parameters back as compact, comma-free text (the
prefix of the labels, whose parts are separated by colons).

Examples
--------
>>> parse_call("SOAP(r_cut=5, n_max=4, species=['Si', 'O'])")
('SOAP', {'r_cut': 5, 'n_max': 4, 'species': ['Si', 'O']})
>>> parse_call("ACSF")
('ACSF', {})
>>> render_call("ACSF", {"r_cut": 6.5, "g2_params": [[1, 0], [0.1, 2]]})
'ACSF(r_cut=6.5 g2_params=[[1 0] [0.1 2]])'
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from xenonscale.errors import ConfigError

__all__ = ["EXAMPLE", "MAX_SPEC_CHARS", "parse_call", "render_call", "render_value"]

#: What the error messages show as the shape to follow.
EXAMPLE = "dscribe:SOAP(r_cut=5, n_max=4, l_max=3, species=['Si', 'O'])"
#: Longest argument accepted (a species list of every element is ~600 characters).
MAX_SPEC_CHARS = 20_000


def parse_call(text: str) -> tuple[str, dict[str, object]]:
    """``"NAME(key=literal, ...)"`` → ``(NAME, {key: value})``; a :class:`ConfigError` otherwise.

    >>> parse_call("MBTR(k=3, grid={'min': -1, 'max': 1, 'n': 50, 'sigma': 0.05})")[1]["grid"]
    {'min': -1, 'max': 1, 'n': 50, 'sigma': 0.05}
    >>> parse_call("SOAP(r_cut=__import__('os'))")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xenonscale.errors.ConfigError: dscribe:SOAP(r_cut=__import__('os')): r_cut= must be a lit...
    """
    source = text.strip() if isinstance(text, str) else text
    if not isinstance(source, str) or not source:
        raise ConfigError(f"dscribe:{text!r} names no descriptor: use e.g. {EXAMPLE}")
    if len(source) > MAX_SPEC_CHARS:
        raise ConfigError(
            f"dscribe: argument of {len(source)} characters is longer than {MAX_SPEC_CHARS}: "
            "use a species preset such as species='Z<=83'"
        )
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        why = getattr(exc, "msg", None) or type(exc).__name__
        raise ConfigError(
            f"dscribe:{source}: not NAME or NAME(key=value, ...) ({why}); use e.g. {EXAMPLE}"
        ) from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ConfigError(f"dscribe:{source}: not NAME or NAME(key=value, ...); use e.g. {EXAMPLE}")
    if node.args:
        raise ConfigError(
            f"dscribe:{source}: positional argument {ast.unparse(node.args[0])!r}: "
            f"name every parameter (key=value), e.g. {EXAMPLE}"
        )
    params: dict[str, object] = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            raise ConfigError(f"dscribe:{source}: '**' is not accepted: write key=value pairs")
        try:
            params[keyword.arg] = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            raise ConfigError(
                f"dscribe:{source}: {keyword.arg}= must be a literal (number, string, list, "
                f"dict, True/False/None), not {ast.unparse(keyword.value)}"
            ) from None
    return node.func.id, params


def render_value(value: object) -> str:
    """A value as compact text without commas or colons (``[[1 0] [0.1 2]]``, ``{min=0 n=9}``).

    >>> render_value({"function": "exp", "scale": 0.5}), render_value(("Si", "O"))
    ('{function=exp scale=0.5}', '[Si O]')
    >>> render_value(2.0), render_value([[1, 0.5]])
    ('2', '[[1 0.5]]')
    """
    if isinstance(value, Mapping):
        return "{" + " ".join(f"{k}={render_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + " ".join(render_value(v) for v in value) + "]"
    if isinstance(value, float):
        return format(value, "g") if abs(value) < 1e16 else repr(value)
    return str(value)


def render_call(name: str, params: Mapping[str, object]) -> str:
    """``NAME`` or ``NAME(k=v k=v)`` (:func:`render_value` values, space separated)."""
    if not params:
        return name
    return name + "(" + " ".join(f"{k}={render_value(v)}" for k, v in params.items()) + ")"
