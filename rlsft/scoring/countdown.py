"""The Countdown checker: is an answer an arithmetic expression over the given numbers that hits the
target? Shared by the micro world's countdown (each number at most once) and TinyZero's Countdown
(`Jiayi-Pan/Countdown-Tasks-3to4`, each number exactly once). Nothing is executed: expressions are
parsed to an AST and walked over a whitelist, exactly, in fractions.
"""

from __future__ import annotations

import ast
from fractions import Fraction

from rlsft.scoring.verify import extract_answer

_MAX_EXPR_CHARS = 200


def _eval_node(node: ast.AST, budget: list[int]) -> tuple[Fraction, list[int]]:
    """Evaluate a whitelisted arithmetic AST exactly; returns (value, integer literals used)."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError("expression too large")
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if node.value > 10**6:
            raise ValueError("number too large")
        return Fraction(node.value), [node.value]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
        lv, lu = _eval_node(node.left, budget)
        rv, ru = _eval_node(node.right, budget)
        if isinstance(node.op, ast.Add):
            v = lv + rv
        elif isinstance(node.op, ast.Sub):
            v = lv - rv
        elif isinstance(node.op, ast.Mult):
            v = lv * rv
        else:
            if rv == 0:
                raise ValueError("division by zero")
            v = lv / rv
        return v, lu + ru
    raise ValueError(f"not allowed: {type(node).__name__}")


def check_countdown(expr: str, numbers: list[int], target: int, exact: bool = False) -> bool:
    """True when `expr` uses only + - * / and brackets over `numbers` (each at most once; with
    `exact`, each exactly once, as TinyZero's Countdown asks) and equals `target`.

    Never raises and never executes code: the expression is parsed to an AST and walked.

    >>> check_countdown("(3 + 5) * 2", [2, 3, 5], 16)
    True
    >>> check_countdown("5 * 5", [2, 3, 5], 25), check_countdown("__import__('os')", [1], 1)
    (False, False)
    >>> check_countdown("2 * 8 = 16", [2, 8, 3], 16), check_countdown("2 * 8 = 17", [2, 8, 3], 16)
    (True, False)
    >>> check_countdown("(3 + 5) * 2", [2, 3, 5, 7], 16), check_countdown("(3 + 5) * 2", [2, 3, 5, 7], 16, exact=True)
    (True, False)
    """
    if not isinstance(expr, str) or len(expr) > _MAX_EXPR_CHARS:
        return False
    # An equation "E = F = ..." earns credit only when E follows the number rule and every side
    # equals the target: "2 * 8 = 16" does, "2 * 8 = 17" (a false statement) does not.
    sides = [side.strip() for side in expr.replace("×", "*").replace("÷", "/").split("=")]
    values = []
    try:
        for side in sides:
            value, used = _eval_node(ast.parse(side, mode="eval").body, [64])
            values.append(value)
            if len(values) == 1:
                first_used = used
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError):
        return False
    pool = list(numbers)
    for u in first_used:
        if u not in pool:
            return False
        pool.remove(u)
    return all(v == target for v in values) and not (exact and pool)


def parse_countdown_gold(gold: str) -> tuple[int, list[int]] | None:
    """`target: T; numbers: a b c` -> (T, [a, b, c]); None if malformed.

    >>> parse_countdown_gold("target: 16; numbers: 2 3 5")
    (16, [2, 3, 5])
    >>> parse_countdown_gold("16") is None
    True
    """
    try:
        t, ns = gold.split(";")
        k1, target = t.split(":")
        k2, numbers = ns.split(":")
        if k1.strip() != "target" or k2.strip() != "numbers":
            return None
        return int(target), [int(x) for x in numbers.split()]
    except (ValueError, AttributeError):
        return None


def verify_countdown(completion: str, gold: str, mode: str = "strict", exact: bool = False) -> bool | None:
    """Countdown verifier: the extracted answer is an expression over the given numbers that hits the
    target. `gold` reads `target: T; numbers: a b c`; None when it cannot be parsed.

    >>> verify_countdown("<think> 3 + 5 = 8 </think> <answer>(3 + 5) * 2</answer>", "target: 16; numbers: 2 3 5")
    True
    >>> verify_countdown("<answer>5 * 5</answer>", "target: 25; numbers: 2 3 5")
    False
    """
    parsed = parse_countdown_gold(gold)
    if parsed is None:
        return None
    target, numbers = parsed
    answer = extract_answer(completion, mode)
    return bool(answer) and check_countdown(answer, numbers, target, exact)


def verify_countdown_exact(completion: str, gold: str, mode: str = "strict") -> bool | None:
    """`verify_countdown` with every number used exactly once (TinyZero's rule).

    >>> verify_countdown_exact("<answer>(3 + 5) * 2</answer>", "target: 16; numbers: 2 3 5"), verify_countdown_exact("<answer>3 + 5</answer>", "target: 8; numbers: 2 3 5")
    (True, False)
    """
    return verify_countdown(completion, gold, mode, exact=True)
