"""CEL conditions of exclusive gateways (DESIGN §9), with cel-python: never `eval`.

A condition is compiled once, when its definition is loaded (`compile_condition`):
a syntax error, a call of a function CEL does not define, or a constant condition
(no variable in it) that is not a bool or always fails is refused then, naming the
expression. At run time (`Condition.evaluate`) every instance variable is a CEL
variable of its name (JSON values as CEL values: maps, lists, strings, doubles,
ints, bools, null). A runtime error (an undeclared variable, a type mismatch, a
division by zero, an evaluation running past TIME_LIMIT_S) or a result that is not a
bool is a `ConditionError` with a one-line message, which the engine turns into an
incident: it never escapes as a server error.
"""

from __future__ import annotations

import contextvars
import gc
import logging
import operator
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

import celpy
import lark
import re2
from celpy import celtypes, evaluation
from celpy.celparser import CELParseError

MAX_LENGTH: Final = 2000  # characters of one condition
# Levels of one condition's parse tree (grammar rules, not only parentheses: `x > 0`
# is 12, a chain of 100 `+` about 210, 12 nested parentheses about 130). cel-python
# evaluates recursively: past ~600 levels it ran out of Python's stack, and every
# instance reaching the gateway became an incident saying "maximum recursion depth
# exceeded". cel-go's parser stops at a recursion depth of 250, too.
MAX_DEPTH: Final = 250
# An escape (not itself escaped) in a string or bytes literal that may name a value
# outside what the literal holds: `\u`/`\U` (Unicode scalar values only: cel-python
# raised "chr() arg not in range(0x110000)" for `\U00110000` at run time and took a
# lone surrogate `\ud800` as a character) and octal `\ooo` (at most `\377`; `b"\777"`
# failed at run time: "bytes must be in range(0, 256)"). Raw literals have no escapes.
_ESCAPE: Final = re.compile(r"(?<!\\)(?:\\\\)*\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{3})")
# Functions the standard environment defines, and the macros the parser expands.
KNOWN_FUNCTIONS: Final = frozenset(
    name for name in evaluation.base_functions if name.isidentifier() and name != "_in_"
) | {"has", "all", "exists", "exists_one", "map", "filter"}

# CPU seconds (of the evaluating thread) the conditions of one engine step may take,
# converting the variables they read included. cel-python interprets in Python on
# the event loop, ~11 µs a parse-tree step on the 2-core box, and a comprehension's
# body runs once per element: over lists under the variable size cap,
# `m.all(x, l == l)` ran 14 s and `m.map(x, l + l)` took the server from 197 to
# 757 MB, every other call waiting; a 256 KB list took 0.7 s to convert, once per
# gateway. cel-go and Kubernetes bound evaluation for the same reason (cel-go
# `CostLimit`); a step count was tried here first and refused true conditions whose
# steps were cheap (cel-python evaluates both sides of `||` and `&&`), while one step
# can be O(list). The time is checked every CHECK_EVERY steps and converted elements,
# so a step's conditions stop within a few steps of the limit. The thread's CPU time,
# not the wall clock: time spent waiting for the GIL or another thread's work is not
# the condition's. A condition such as `amount > 1000 && region == "eu"` takes
# ~0.3 ms, `l.exists(x, x > 5)` ~0.1 ms per element of `l`: a comprehension over a
# couple of thousand elements fits, one over 3,000 may not. Like cel-go's cost limit,
# running out fails the condition even when `||` could have been decided by its
# other side; near the limit, a slower replica may fail what a faster one passes.
TIME_LIMIT_S: Final = 0.25
CHECK_EVERY: Final = 8
# Characters, bytes and list or map entries the conditions of one step may make with
# `+` and with method calls (`map`, `filter`): a time bound alone let
# `size(l.map(x, s + s)) > 0` over variables under the size cap take the server from
# 31 to 357 MB in its 250 ms. 8 M is a few dozen times the default variable cap
# (256 KB), and bounds what a step makes to tens of MB.
MAX_MADE: Final = 8_000_000


class _OutOfTime(BaseException):
    """Raised at the first check past the limit. A BaseException, so that cel-python's
    own `except Exception` (its `||`, `&&` and `?:` keep an error as an undecided
    value) cannot swallow it: the whole evaluation stops."""


class _TooMuchMade(BaseException):
    """Raised when the values a step made pass MAX_MADE (a BaseException: as above)."""


class Budget:
    """The CPU time (`time.thread_time` seconds) and the made values left to the
    conditions of one engine step, shared by every condition and conversion of the
    step. Only the time between `start` and `stop` is spent: the engine's own work in
    the step (ids, events, other nodes) is not the conditions'."""

    __slots__ = ("_count", "deadline", "left", "made")

    def __init__(self) -> None:
        self.left = TIME_LIMIT_S
        self.deadline = 0.0
        self._count = 0
        self.made = 0

    def start(self) -> None:
        self.deadline = time.thread_time() + self.left

    def stop(self) -> None:
        self.left = self.deadline - time.thread_time()

    def count_made(self, value: Any) -> None:
        """Count a value an operation made: its length if a string, bytes, list or
        map; raises _TooMuchMade past MAX_MADE."""
        if isinstance(value, str | bytes | list | dict):
            self.made += len(value)
            if self.made > MAX_MADE:
                raise _TooMuchMade()

    def tick(self, work: int = 1) -> None:
        """Count `work` steps or converted elements; raises _OutOfTime past the limit."""
        self._count += work
        if self._count >= CHECK_EVERY:
            self._count = 0
            if time.thread_time() > self.deadline:
                raise _OutOfTime()


class _TimedEvaluator(evaluation.Evaluator):
    """cel-python's evaluator, counting every node it visits against a Budget; its
    comprehensions' evaluators share it."""

    def __init__(self, ast: lark.Tree[Any], activation: Any, budget: Budget) -> None:
        super().__init__(ast, activation=activation)
        self._budget = budget

    def visit(self, tree: lark.Tree[Any]) -> Any:
        self._budget.tick()
        return super().visit(tree)

    def visit_children(self, tree: lark.Tree[Any]) -> list[Any]:
        self._budget.tick()
        return super().visit_children(tree)

    def addition(self, tree: lark.Tree[Any]) -> Any:
        made = super().addition(tree)
        if len(tree.children) > 1:  # an operation, not a pass-through of its operand
            self._budget.count_made(made)
        return made

    def member_dot_arg(self, tree: lark.Tree[Any]) -> Any:
        made = super().member_dot_arg(tree)
        self._budget.count_made(made)
        return made

    def function_eval(self, name_token: lark.Token, exprlist: Any = None) -> Any:
        made = super().function_eval(name_token, exprlist)  # `string(s)`, `bytes(s)`
        self._budget.count_made(made)
        return made

    def sub_evaluator(self, ast: lark.Tree[Any]) -> evaluation.Evaluator:
        return _TimedEvaluator(ast, self.activation, self._budget)


_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


def _to_cel(value: Any, budget: Budget) -> Any:
    """A JSON value as a CEL value, as cel-python's `json_to_cel`, counting every
    element against `budget` (a 256 KB list took 0.7 s). Raises ValueError for a value
    that is not JSON."""
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            # What IntType(value) makes, without its generic conversion (5.7 µs an
            # int, the most of a long list's conversion, against 0.2 µs).
            return int.__new__(celtypes.IntType, value)
        return celtypes.IntType(value)  # its own overflow error
    if isinstance(value, str):
        return celtypes.StringType(value)
    if value is None:
        return None
    if isinstance(value, list | tuple):
        budget.tick(len(value))
        return celtypes.ListType([_to_cel(item, budget) for item in value])
    if isinstance(value, dict):
        budget.tick(len(value))
        return celtypes.MapType(
            {_to_cel(key, budget): _to_cel(item, budget) for key, item in value.items()}
        )
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


_ENVIRONMENT = celpy.Environment()
# RE2 itself prints a pattern it cannot parse to the process's stderr (`re2.cc:242]
# Error parsing '...'`), past the JSON logger and LOG_COLLECTOR_URL: a pattern from
# an instance variable could write forged log lines there. Compiled quiet instead.
_QUIET_RE2 = re2.Options()
_QUIET_RE2.log_errors = False
# RE2's memory per compiled pattern (its default is 8 MB); a pattern that needs more
# fails to compile, so the condition fails. Patterns come from instance variables
# too, and up to _PATTERNS_CACHED of them are kept: 64 MB at most.
_QUIET_RE2.max_mem = 1 << 20
_PATTERNS_CACHED: Final = 64


@lru_cache(maxsize=_PATTERNS_CACHED)
def _pattern(pattern: str) -> Any:
    return re2.compile(pattern, _QUIET_RE2)


def _matches(text: str, pattern: str) -> Any:
    """CEL `matches` (RE2 syntax, a partial match) as cel-python's, without RE2's
    stderr line for a bad pattern; the error stays a CEL evaluation error."""
    try:
        # As cel-python: a pattern or text of another type is a TypeError, which it
        # answers "no such overload"; a bytes text is searched as bytes.
        found = _pattern(pattern).search(text)
    except re2.error as exc:
        return evaluation.CELEvalError(
            "not a valid RE2 pattern, or too large", exc.__class__, exc.args
        )
    return celtypes.BoolType(found is not None)


def _index(container: Any, index: Any) -> Any:
    """CEL `l[i]` and `m[k]` as cel-python's (Python's getitem), except what Python
    indexing allows and CEL does not: a negative list index (CEL: out of range, which
    Python read from the end: `l[-1]` was the last element), a bool one (CEL: no
    overload; Python read `l[true]` as `l[1]`) and an index into a string or bytes
    (CEL has none; Python gave `'abc'[0]` as `'a'`), and a map key that is a bool
    for a number or a number for a bool."""
    if isinstance(container, evaluation.CELEvalError):
        return container  # the operand's own error, not "no operator '[]'"
    if isinstance(index, evaluation.CELEvalError):
        return index
    if isinstance(container, str | bytes):
        raise TypeError("strings and bytes have no index")
    if isinstance(container, list):
        if isinstance(index, bool | celtypes.BoolType):
            raise TypeError("a list index must be an int")
        if isinstance(index, int) and index < 0:
            raise IndexError(index)
    value = operator.getitem(container, index)
    # Python found `{true: 2}[1]` (True == 1, one hash): CEL has no such key.
    if (
        isinstance(container, dict)
        and isinstance(index, int | float)
        and _matched_key_is_bool(container, index) != isinstance(index, celtypes.BoolType)
    ):
        raise KeyError(index)
    return value


def _conditional(condition: Any, left: Any, right: Any) -> Any:
    """CEL `c ? a : b` as cel-python's, except that a condition that failed answers its
    own error, not "no operator '?:' for an error, ..."."""
    if isinstance(condition, evaluation.CELEvalError):
        return condition
    return celtypes.logical_condition(condition, left, right)


# The budget of the evaluation running in this context, for the functions below that
# walk a value (cel-python calls them without the evaluator).
_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def _matched_key_is_bool(mapping: dict[Any, Any], key: Any) -> bool:
    """Whether the key of `mapping` that Python matches with `key` (a bool or a
    number found in it) is a bool. Python finds 1 and 1.0 under `true`, and `true`
    under 1: one hash, and `True == 1`. A map holds at most one of them (cel-python
    refuses a literal with both), so this compares no keys: a number matches a bool
    key only when it is 0 or 1 and the map has that bool."""
    if isinstance(key, celtypes.BoolType):
        return any(isinstance(k, celtypes.BoolType) and bool(k) == bool(key) for k in mapping)
    number = float(key)
    if number not in (0.0, 1.0):
        return False
    return any(isinstance(k, celtypes.BoolType) and bool(k) == bool(number) for k in mapping)


def _bool_against_number(left: Any, right: Any) -> bool:
    """Whether `left` and `right`, or two elements at the same place in them (lists
    of one length, maps by key), are a bool and a non-bool number: Python's
    `True == 1`, which cel-python inherits (its bool is an int). Other differences are
    left to cel-python's own comparison."""
    budget = _BUDGET.get()
    pending = [(left, right)]
    while pending:
        a, b = pending.pop()
        if budget is not None:
            budget.tick()
        a_bool, b_bool = isinstance(a, celtypes.BoolType), isinstance(b, celtypes.BoolType)
        if a_bool != b_bool and isinstance(b if a_bool else a, int | float):
            return True
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict) and len(a) == len(b):
            if budget is not None:
                budget.tick(len(a))
            for key, value in a.items():
                try:
                    if key not in b:
                        continue
                except TypeError:  # cel-python's typed ==, in a hash collision
                    continue
                if isinstance(key, int | float) and _matched_key_is_bool(b, key) != isinstance(
                    key, celtypes.BoolType
                ):
                    return True
                pending.append((value, b[key]))
    return False


def _equal(left: Any, right: Any) -> Any:
    """CEL `==`: cel-python's, except that a bool is never equal to a number (CEL has
    no conversion between them; Python's `True == 1` routed `x == 1` with `x` true
    down the flow for 1): `true == 1` fails with no operator, as `1 == 1.0` does in
    cel-python, and lists or maps that differ only so are unequal."""
    if _bool_against_number(left, right):
        if not isinstance(left, list | dict):
            raise TypeError("no such overload")
        return celtypes.BoolType(False)
    return evaluation.bool_eq(left, right)


def _not_equal(left: Any, right: Any) -> Any:
    """CEL `!=`, the negation of `_equal`."""
    if _bool_against_number(left, right):
        if not isinstance(left, list | dict):
            raise TypeError("no such overload")
        return celtypes.BoolType(True)
    return evaluation.bool_ne(left, right)


def _in(item: Any, container: Any) -> Any:
    """CEL `in` (a list's elements, a map's keys): cel-python's `operator_in`, except
    that a bool and a number are of different types (`1 in [true]` and
    `1 in {true: "x"}` were true): no match and a comparison of different types is
    "no such overload", as cel-python answers `"a" in [1]`. Every element counts
    toward the step's budget."""
    if isinstance(item, evaluation.CELEvalError):
        return item
    if isinstance(container, evaluation.CELEvalError):
        return container
    budget = _BUDGET.get()
    result: Any = celtypes.BoolType(False)
    for element in container:
        if budget is not None:
            budget.tick()
        try:
            if _bool_against_number(element, item):
                if isinstance(element, list | dict):
                    continue  # lists or maps that differ: unequal
                raise TypeError("no such overload")
            if element == item:
                return celtypes.BoolType(True)
        except TypeError as exc:
            result = evaluation.CELEvalError("no such overload", exc.__class__, exc.args)
    return result


_NOT_NUMBERS: Final = (str, bytes, list, dict, celtypes.BoolType)


def _multiply(left: Any, right: Any) -> Any:
    """CEL `*`, numbers only. cel-python used Python's `*`, so `"x" * 2000000000` (and
    a list or bytes times an int) was repetition: 2 GB in one step, when a definition
    with that constant condition loaded."""
    if isinstance(left, _NOT_NUMBERS) or isinstance(right, _NOT_NUMBERS):
        raise TypeError("no such overload")
    return operator.mul(left, right)


def _modulo(left: Any, right: Any) -> Any:
    """CEL `%`, numbers only. cel-python used Python's `%`, so a string operand was
    %-formatting: `"%1000000000d" % n` made a 1 GB string."""
    if isinstance(left, _NOT_NUMBERS) or isinstance(right, _NOT_NUMBERS):
        raise TypeError("no such overload")
    return operator.mod(left, right)


# The text of a CEL duration (cel-python's own pattern), matched by RE2 in linear
# time first: cel-python matches it with Python's `re`, and its `(...[a-z]+)+$`
# backtracks exponentially on text such as "aaaa...a!", in one C call no check can
# interrupt. And no duration or timestamp is longer than a few dozen characters.
_DURATION: Final = re2.compile(r"[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+", _QUIET_RE2)
_TIME_TEXT_MAX: Final = 64


def _duration(value: Any) -> Any:
    if isinstance(value, str) and (
        len(value) > _TIME_TEXT_MAX or _DURATION.fullmatch(value) is None
    ):
        raise ValueError("not a duration")
    return celtypes.DurationType(value)


def _timestamp(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _TIME_TEXT_MAX:
        raise ValueError("not a timestamp")
    return celtypes.TimestampType(value)


def _string(value: Any) -> Any:
    """CEL `string()`, of scalars only: cel-python also made Python's repr of a list
    or map, as long as the value."""
    if isinstance(value, list | dict):
        raise TypeError("no such overload")
    return celtypes.StringType(value)


_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "matches": _matches,
    "_[_]": _index,
    "_==_": _equal,
    "_!=_": _not_equal,
    "_in_": _in,
    "_?_:_": _conditional,
    "_*_": _multiply,
    "_%_": _modulo,
    "duration": _duration,
    "timestamp": _timestamp,
    "string": _string,
}
# cel-python logs every evaluation error at ERROR; ours become incidents instead.
logging.getLogger("celpy").setLevel(logging.CRITICAL)
logging.getLogger("Evaluator").setLevel(logging.CRITICAL)


class ConditionError(ValueError):
    """A condition that does not compile, or failed at run time; the message is one
    line meant for an error body or an incident."""


@dataclass(frozen=True, slots=True)
class Condition:
    """A compiled condition: `text` as written, `program` cel-python's runner,
    `names` the identifiers it reads (variables, and a comprehension's own)."""

    text: str
    program: Any
    names: frozenset[str] = frozenset()

    def evaluate(
        self,
        variables: Mapping[str, Any],
        converted: dict[str, Any] | None = None,
        budget: Budget | None = None,
    ) -> bool:
        """The condition's value over `variables` (JSON values). `converted` keeps the
        CEL values of variables already converted, and `budget` the time left, for the
        other conditions of one engine step over the same variables (a new Budget when
        None). Raises ConditionError for a runtime error, for running past the budget,
        or for a result that is not a bool."""
        memo = {} if converted is None else converted
        budget = Budget() if budget is None else budget
        # No cyclic collection meanwhile: CEL values hold no cycles, a step's
        # allocations are bounded (MAX_MADE), and a full collection of the server's
        # heap would be charged to the condition's time (~0.1 s a pass).
        collecting = gc.isenabled()
        gc.disable()
        budget.start()
        running = _BUDGET.set(budget)
        try:
            # Only the variables it reads, each once per step: converting a 200 KB
            # list took ~0.2-0.85 s, for every condition, read or not.
            activation = {}
            for name in self.names:
                if name in variables:
                    if name not in memo:
                        memo[name] = _to_cel(variables[name], budget)
                    activation[name] = memo[name]
            evaluator = _TimedEvaluator(self.program.ast, self.program.new_activation(), budget)
            result = evaluator.evaluate(activation)
        except _OutOfTime:
            raise ConditionError(
                f"condition {self.text!r} failed: the conditions of this step ran past the"
                f" limit of {TIME_LIMIT_S * 1000:.0f} ms of evaluation"
            ) from None
        except _TooMuchMade:
            raise ConditionError(
                f"condition {self.text!r} failed: the conditions of this step made values"
                f" of more than {MAX_MADE:,} characters or elements together"
            ) from None
        except OverflowError:  # `int(double("inf"))`: Python's own words otherwise
            raise ConditionError(
                f"condition {self.text!r} failed: integer overflow, or a value the"
                " conversion cannot read"
            ) from None
        except Exception as exc:  # cel-python raises CELEvalError and Python errors alike
            raise ConditionError(f"condition {self.text!r} failed: {_brief(exc)}") from None
        finally:
            _BUDGET.reset(running)
            budget.stop()
            if collecting:
                gc.enable()
        if isinstance(result, evaluation.CELEvalError):
            raise ConditionError(f"condition {self.text!r} failed: {_brief(result)}")
        if not isinstance(result, celtypes.BoolType):
            raise ConditionError(
                f"condition {self.text!r} evaluated to {_kind(result)}, not a bool"
            )
        return bool(result)


def compile_condition(text: str) -> Condition:
    """Parse and check `text`. Raises ConditionError for an empty or over-long
    expression, a syntax error (with the column), a call of an unknown function, or
    an expression without variables whose value is not a bool or an error."""
    if not text.strip():
        raise ConditionError("condition must not be empty")
    if len(text) > MAX_LENGTH:
        raise ConditionError(f"condition must be at most {MAX_LENGTH} characters")
    try:
        tree = _ENVIRONMENT.compile(text)
    except CELParseError as exc:
        where = f" at column {exc.column}" if getattr(exc, "column", None) else ""
        raise ConditionError(f"condition {text!r} does not compile{where}") from None
    except Exception as exc:  # a parser failure of another kind: still the caller's text
        raise ConditionError(f"condition {text!r} does not compile: {_brief(exc)}") from None
    if _depth(tree) > MAX_DEPTH:
        raise ConditionError(
            f"condition {text!r} nests too deeply: at most {MAX_DEPTH} levels"
            " of CEL syntax (use fewer parentheses or shorter operator chains)"
        )
    bad = _bad_escape(tree)
    if bad is not None:
        why = "is above \\377" if bad[0] in "01234567" else "names no Unicode character"
        raise ConditionError(f"condition {text!r} has the escape \\{bad}, which {why}")
    unknown = sorted({name for name in _called(tree) if name not in KNOWN_FUNCTIONS})
    if unknown:
        names = ", ".join(f"{name}()" for name in unknown)
        raise ConditionError(f"condition {text!r} calls undefined functions: {names}")
    try:
        program = _ENVIRONMENT.program(tree, functions=_FUNCTIONS)
    except Exception as exc:
        raise ConditionError(f"condition {text!r} does not compile: {_brief(exc)}") from None
    condition = Condition(text=text, program=program, names=frozenset(_read(tree)))
    if not condition.names:
        # No variable in it: its one value is known now, so a constant that is not a
        # bool (`"yes"`, `1 + 1`) or always fails (`1 / 0`) is refused at load, not
        # found as an incident of every instance that reaches it.
        condition.evaluate({})
    return condition


def _bad_escape(tree: lark.Tree[Any]) -> str | None:
    """The first escape in a string or bytes literal of `tree` (tokens, so comments and
    raw literals are not read) naming no Unicode scalar value or byte, without its
    backslash; None when there is none."""
    for token in tree.scan_values(lambda value: isinstance(value, lark.Token)):
        if token.type not in ("STRING_LIT", "BYTES_LIT"):
            continue
        literal = str(token)
        if literal.lstrip("bB")[:1] in ("r", "R"):  # r"", br"", rb""...
            continue
        if literal[:1] in ("r", "R"):
            continue
        for escape in _ESCAPE.finditer(literal):
            body = escape.group(1)
            if body[0] in "uU":
                code = int(body[1:], 16)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    return body
            elif int(body, 8) > 0o377:
                return body
    return None


def _depth(tree: lark.Tree[Any]) -> int:
    """Levels of `tree`, counted without recursion (the point is a tree too deep)."""
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend(
            (child, level + 1) for child in node.children if isinstance(child, lark.Tree)
        )
    return deepest


def _read(tree: lark.Tree[Any]) -> Iterator[str]:
    """Names of the identifiers the expression reads (`a` of `a.b`, `.a`, and `.a()`,
    which cel-python reads as the variable `a`)."""
    for node in tree.iter_subtrees():
        if node.data in ("ident", "dot_ident", "dot_ident_arg"):
            for child in node.children:
                if isinstance(child, lark.Token):
                    yield str(child)
                    break


def _called(tree: lark.Tree[Any]) -> Iterator[str]:
    """Names of the functions and methods the expression calls."""
    for node in tree.iter_subtrees():
        if node.data == "ident_arg" and node.children:
            yield str(node.children[0])
        elif node.data == "member_dot_arg" and len(node.children) > 1:
            yield str(node.children[1])


# cel-python names the operator by its grammar rule (`Token('RULE', 'addition_add')`);
# CEL's own words are the operator as written.
_OPERATORS: Final = {
    "addition_add": "+",
    "addition_sub": "-",
    "multiplication_mul": "*",
    "multiplication_div": "/",
    "multiplication_mod": "%",
    "relation_lt": "<",
    "relation_le": "<=",
    "relation_gt": ">",
    "relation_ge": ">=",
    "relation_eq": "==",
    "relation_ne": "!=",
    "relation_in": "in",
    "unary_neg": "-",
    "unary_not": "!",
}
# `<class 'celpy.celtypes.StringType'>`, `<class 'NoneType'>`: a Python class.
_CLASS: Final = re.compile(r"<class '(?:[\w.]*\.)?(\w+)'>")
_OVERLOAD: Final = re.compile(
    r"found no matching overload for Token\('RULE', '(\w+)'\) applied to '\((.*)\)'"
)
# The same for functions cel-python names as CEL's internal ones (`_[_]`, `_?_:_`),
# and the operands' Python classes.
_FUNCTION_OVERLOAD: Final = re.compile(
    r"found no matching overload for (_\S*) applied to '\((.*)\)'"
)
_MISSING_KEY: Final = re.compile(r"no such member in mapping: (.*)")
# Python's own words, from cel-python code that let them through.
_NOT_ITERABLE: Final = re.compile(r"'(\w+)' object is not iterable")
_NOT_CALLABLE: Final = re.compile(r"'(\w+)' object is not callable")
_UNHASHABLE: Final = re.compile(r"unhashable type: '(\w+)'")
_DUPLICATE_KEY: Final = re.compile(r"Duplicate key \w+\((.*)\)")
_UNKNOWN_TYPE: Final = re.compile(r"No '([\w.]+)' in bindings .*")
_FIELD_SELECTION: Final = re.compile(
    r".* with type: '(<class [^>]*>)' does not support field selection"
)


def _cel_type(python_name: str) -> str:
    """CEL's name of a cel-python value class (StringType -> string, NoneType -> null)."""
    if python_name == "NoneType":
        return "null"
    return python_name.removesuffix("Type").lower()


def _brief(exc: BaseException) -> str:
    """cel-python's error text in CEL's words, one line: without the activation dump
    it appends, operators as written (`+`, not `addition_add`) and CEL type names
    (`string`, not `<class 'celpy.celtypes.StringType'>`), so an incident never shows
    the runtime's internals."""
    text = str(exc.args[0]) if exc.args else ""
    text = text.split(" (in activation", 1)[0].strip()
    overload = _OVERLOAD.fullmatch(text)
    if overload is not None:
        rule, operands = overload.groups()
        operator = _OPERATORS.get(rule, rule.rsplit("_", 1)[-1])
        kinds = [_cel_type(name) for name in _CLASS.findall(operands)]
        return f"no operator '{operator}' for {' and '.join(kinds) or 'these operands'}"
    function = _FUNCTION_OVERLOAD.fullmatch(text)
    if function is not None:
        name, operands = function.groups()
        operator = name.replace("_", "")  # `_[_]` -> `[]`, `_?_:_` -> `?:`
        kinds = [_cel_type(name) for name in _CLASS.findall(operands)]
        return f"no operator '{operator}' for {_and(kinds) or 'these operands'}"
    missing = _MISSING_KEY.fullmatch(text)
    if missing is not None:  # `m.z` of a map without "z": CEL's "no such key"
        return f"no such key: {missing.group(1)}"
    if text == "no such key" and len(exc.args) > 2 and exc.args[2]:  # `m["z"]`, `m[5]`
        return f"no such key: {_literal(exc.args[2][0])}"
    if len(exc.args) > 1 and exc.args[1] is KeyError and text.isidentifier():  # `.zz`
        return f"undeclared reference to {text!r}"
    iterable = _NOT_ITERABLE.fullmatch(text)
    if iterable is not None:  # `n.all(x, ...)` over an int
        kind = _cel_type(iterable.group(1))
        return f"{_article(kind)} {kind} is not a list or map to iterate"
    not_callable = _NOT_CALLABLE.fullmatch(text)
    if not_callable is not None:  # `n{a: 1}` with `n` a variable
        kind = _cel_type(not_callable.group(1))
        return f"{_article(kind)} {kind} is not a message type"
    unhashable = _UNHASHABLE.fullmatch(text)
    if unhashable is not None:
        kind = _cel_type(unhashable.group(1))
        return f"{_article(kind)} {kind} cannot be a map key"
    duplicate = _DUPLICATE_KEY.fullmatch(text)
    if duplicate is not None:
        return f"the map key {duplicate.group(1)} appears twice"
    unknown = _UNKNOWN_TYPE.fullmatch(text)
    if unknown is not None:
        return f"unknown message type {unknown.group(1)!r}"
    if text == "return error for overflow":
        # cel-python's one word for an arithmetic overflow and for a conversion that
        # fails (`int("abc")`, `timestamp("bad")`); CEL's own words for each.
        return "integer overflow, or a value the conversion cannot read"
    selection = _FIELD_SELECTION.fullmatch(text)
    if selection is not None:
        kind = _cel_type(_CLASS.findall(selection.group(1))[0])
        return f"{_article(kind)} {kind} has no fields to select"
    text = _CLASS.sub(lambda m: _cel_type(m.group(1)), text)
    if text == "invalid_argument":  # cel-python's status word (an index out of range)
        text = "invalid argument"
    return text or "evaluation error"


def _literal(value: Any) -> str:
    """A key as CEL writes it: `'z'`, `5`, `true`."""
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, bool | celtypes.BoolType):
        return "true" if value else "false"
    return str(value)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _and(words: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    if len(words) < 3:
        return " and ".join(words)
    return f"{', '.join(words[:-1])} and {words[-1]}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return type(value).__name__.removesuffix("Type").lower()
