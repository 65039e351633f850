"""The one help formatter of every ``beyondvis`` parser.

:func:`beyondvis.cli.main.build_parser` sets :class:`HelpFormatter` on the top-level parser and
on every sub-command parser after the command modules have registered theirs, so a module needs
nothing but ``help=`` text on its options:

- an option with a default shows it, ``(default: X)``, unless its help already speaks of the
  default (``"... (default: the bundle's choice)"`` explains better than a value could);
  flags (``store_true``), ``None`` and empty defaults show nothing;
- descriptions keep their paragraphs (module docstrings are used as descriptions) and the
  reStructuredText ``code`` markup of docstrings is shown plain.

Standard library only: building the parser must stay instant (no torch, numpy, ...).
"""

from __future__ import annotations

import argparse
import inspect
import re
import textwrap
from pathlib import PurePath

# ``code`` and :role:`code` (reST) -> code
_LITERAL = re.compile(r"``([^`]+)``")
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
# help text that already says what the default is ("default: ...", "(default 5)", "defaults to")
_SAYS_DEFAULT = re.compile(r"\bdefaults?\b", re.IGNORECASE)
_NO_VALUE_ACTIONS = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._StoreConstAction,
    argparse._AppendConstAction,
    argparse._CountAction,
    argparse._HelpAction,
    argparse._VersionAction,
)


def plain(text: str) -> str:
    """``text`` with reStructuredText literal and role markup removed."""
    return _ROLE.sub(r"\1", _LITERAL.sub(r"\1", text))


def default_text(value: object) -> str | None:
    """How a default reads in help, or ``None`` when it is not worth showing."""
    if value is None or value is argparse.SUPPRESS:
        return None
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            return None
        return " ".join(default_text(v) or "" for v in value)
    if isinstance(value, str) and not value:
        return None
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Shows defaults, keeps description paragraphs and renders docstring markup plain."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        if text is None or text is argparse.SUPPRESS:
            return text
        if isinstance(action, _NO_VALUE_ACTIONS) or action.nargs == 0:
            return text
        # a required positional has no default to show (argparse's own rule)
        if not action.option_strings and action.nargs not in (
            argparse.OPTIONAL,
            argparse.ZERO_OR_MORE,
        ):
            return text
        if "%(default)" in text or _SAYS_DEFAULT.search(text):
            return text
        shown = default_text(action.default)
        if shown is None:
            return text
        # help strings are %-formatted by argparse: a literal % in the value must be doubled
        return f"{text} (default: {shown.replace('%', '%%')})"

    def _split_lines(self, text: str, width: int) -> list[str]:
        return super()._split_lines(plain(text), width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Fill each paragraph of ``text`` on its own; indented or bulleted lines stay as typed."""
        # cleandoc, not dedent: a docstring's first line has no indent, the others do
        paragraphs = re.split(r"\n\s*\n", inspect.cleandoc(plain(text)))
        out = []
        for para in paragraphs:
            lines = para.splitlines()
            if any(
                line[:1].isspace() or line.lstrip().startswith(("- ", "* ", "$ ")) for line in lines
            ):
                out.append("\n".join(indent + line.rstrip() for line in lines))
            else:
                out.append(
                    textwrap.fill(
                        " ".join(line.strip() for line in lines),
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                    )
                )
        return "\n\n".join(out)


def apply(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Give ``parser`` and all its sub-command parsers :class:`HelpFormatter`; returns them all.

    A sub-command parser without a description gets its one-line ``help`` from the listing of
    its parent, so ``beyondvis CMD SUB --help`` says what SUB does.
    """
    parsers: list[argparse.ArgumentParser] = []
    todo = [parser]
    while todo:
        p = todo.pop(0)
        if any(p is seen for seen in parsers):  # an alias lists the same parser twice
            continue
        p.formatter_class = HelpFormatter
        parsers.append(p)
        for action in p._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                line = helps.get(name)
                if not child.description and line:
                    child.description = _sentence(line)
                todo.append(child)
    return parsers


def _sentence(line: str) -> str:
    """A one-line help as a sentence: "fit a codebook" -> "Fit a codebook."; "v(a) ..." stays."""
    if line[:2].isalpha() and line[:2].islower():
        line = line[0].upper() + line[1:]
    return line if line.endswith(".") else line + "."
