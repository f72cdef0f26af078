"""Parse probe programs: ``grammar/probe.lark`` (Lark LALR, contextual lexer) to :mod:`ast`.

The parser is built lazily on first use and cached on disk (a pickle under the user cache
directory, ``$XDG_CACHE_HOME/mmdbg`` or ``~/.cache/mmdbg``), so a new process parses without
rebuilding the LALR tables.  The cache file is written atomically (temp file + rename) and a
corrupt or stale one is rebuilt silently.

Syntax errors become :class:`~mmdbg.probe.errors.ProbeCompileError` with bpftrace's message
shape (``syntax error, unexpected X, expecting Y``).  :func:`is_incomplete` tells a REPL
whether more input could complete the text (an unclosed block or string).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.resources
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from mmdbg.probe import ast as A
from mmdbg.probe.errors import ERROR, Diagnostic, ProbeCompileError

GRAMMAR_NAME = "probe.lark"

# Lark rejects deeper nesting with RecursionError in the transformer; bpftrace programs are
# never this deep, so refuse early with a clear message.
MAX_NESTING = 200
MAX_SOURCE_BYTES = 4 * 1024 * 1024


def grammar_text(name: str = GRAMMAR_NAME) -> str:
    """The grammar from the installed wheel (``mmdbg/_grammar``) or the checkout's ``grammar/``."""
    try:
        packaged = importlib.resources.files("mmdbg") / "_grammar" / name
        if packaged.is_file():
            return packaged.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, NotADirectoryError):  # pragma: no cover
        pass
    root = Path(__file__).resolve().parent.parent.parent
    return (root / "grammar" / name).read_text(encoding="utf-8")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mmdbg"


_LARK_OPTIONS: dict[str, Any] = {
    "parser": "lalr",
    "lexer": "contextual",
    "propagate_positions": True,
    "maybe_placeholders": True,
}


def build_parser(*, strict: bool = False, cache: bool = True) -> Any:
    """Build the Lark parser (``strict=True`` fails on any LALR conflict or regex collision)."""
    from lark import Lark
    from lark import __version__ as lark_version

    text = grammar_text()
    if strict or not cache:
        return Lark(text, strict=strict, **_LARK_OPTIONS)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory = cache_dir()
    final = directory / f"probe-grammar-{lark_version}-{digest}.pickle"
    lark_log = logging.getLogger("lark")
    old_level = lark_log.level
    lark_log.setLevel(logging.CRITICAL)
    try:
        if final.is_file():
            with contextlib.suppress(Exception):
                return Lark(text, cache=str(final), **_LARK_OPTIONS)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".probe-grammar-", dir=directory)
            os.close(fd)
            os.unlink(tmp)
        except OSError:
            return Lark(text, **_LARK_OPTIONS)
        parser = Lark(text, cache=tmp, **_LARK_OPTIONS)
        try:
            os.replace(tmp, final)
        except OSError:  # pragma: no cover - racing writers or read-only dir
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return parser
    finally:
        lark_log.setLevel(old_level)


@functools.lru_cache(maxsize=1)
def get_parser() -> Any:
    return build_parser()


# --------------------------------------------------------------------------- literals

_DURATION = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}


def parse_int(text: str) -> int:
    """bpftrace integer literals: hex, octal, ``1e6``, ``1_000``, C and duration suffixes."""
    t = text.replace("_", "")
    low = t.lower()
    if low.startswith("0x"):
        return int(low.rstrip("ul"), 16)
    mult = 1
    m = re.fullmatch(r"([0-9]+(?:e[0-9]+)?)(ns|us|ms|s|m|h|d|u?l{0,2}|l{1,2}u?)", low)
    if m is None:  # pragma: no cover - the lexer only produces matching text
        raise ValueError(text)
    num, suffix = m.group(1), m.group(2)
    if suffix in _DURATION:
        mult = _DURATION[suffix]
    if "e" in num:
        base, exp = num.split("e")
        value = int(base) * 10 ** min(int(exp), 400)
    elif len(num) > 1 and num.startswith("0"):
        if any(c in "89" for c in num):
            raise ValueError(f"invalid octal literal: {text}")
        value = int(num, 8)
    else:
        value = int(num)
    return value * mult


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v", "e": "\x1b", "'": "'", "?": "?"}


def parse_string(text: str) -> str:
    """Decode a quoted string literal; raises ValueError on a bad escape."""
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        i += 1
        e = body[i] if i < len(body) else ""
        if e in "01234567" and e:
            j = i
            while j < len(body) and j < i + 3 and body[j] in "01234567":
                j += 1
            out.append(chr(int(body[i:j], 8) & 0xFF))
            i = j
        elif e == "x":
            j = i + 1
            while j < len(body) and j < i + 3 and body[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 1:
                raise ValueError("invalid \\x escape: no hex digits")
            out.append(chr(int(body[i + 1:j], 16)))
            i = j
        elif e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 1
        else:
            raise ValueError(f"invalid escape character '\\{e}'")
    return "".join(out)


# --------------------------------------------------------------------------- tree -> AST


def _loc_of(meta: Any) -> A.Loc:
    if getattr(meta, "empty", True):
        return A.NOLOC
    return A.Loc(meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_loc(tok: Any) -> A.Loc:
    return A.Loc(tok.line, tok.column, tok.end_line, tok.end_column)


class _BuildError(Exception):
    def __init__(self, msg: str, loc: A.Loc):
        super().__init__(msg)
        self.msg = msg
        self.loc = loc


_BINOPS = {
    "lor": "||", "land": "&&", "bor": "|", "bxor": "^", "band": "&", "eq": "==", "ne": "!=",
    "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "shl": "<<", "shr": ">>", "add": "+",
    "sub": "-", "mul": "*", "div": "/", "mod": "%",
}
_UNOPS = {"lnot": "!", "bnot": "~", "neg": "-", "deref": "*", "addrof": "&"}


def _parse_cast_text(text: str, loc: A.Loc) -> A.TypeName:
    inner = text.strip()[1:-1].strip()
    stars = inner.count("*")
    base = " ".join(inner.replace("*", " ").split())
    words = base.split(" ")
    if words[0] in ("struct", "union", "enum") and len(words) == 2:
        return A.TypeName(words[0], words[1], stars, loc=loc)
    return A.TypeName("named", base, stars, loc=loc)


def _to_ast(tree: Any) -> A.Program:
    """Convert the Lark tree bottom-up with an explicit stack (no recursion limit issues)."""
    from lark import Token, Tree

    # iterative post-order
    results: dict[int, Any] = {}
    stack: list[tuple[Any, bool]] = [(tree, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, Token) or node is None:
            continue
        if not done:
            stack.append((node, True))
            for ch in reversed(node.children):
                if isinstance(ch, Tree):
                    stack.append((ch, False))
            continue
        kids = [results.pop(id(c)) if isinstance(c, Tree) else c for c in node.children]
        results[id(node)] = _build(node.data, kids, node.meta)
    return results[id(tree)]


def _tok(x: Any) -> str:
    return str(x)


def _build(rule: str, kids: list[Any], meta: Any) -> Any:
    from lark import Token

    loc = _loc_of(meta)

    def expr_of(k: Any) -> A.Expr:
        if isinstance(k, Token):
            return _token_expr(k)
        return k

    if rule in _BINOPS:
        left, right = expr_of(kids[0]), expr_of(kids[1])
        return A.Binary(_BINOPS[rule], left, right, loc=left.loc.join(right.loc) or loc)
    if rule in _UNOPS:
        return A.Unary(_UNOPS[rule], expr_of(kids[0]), loc=loc)
    if rule in ("int_lit", "str_lit", "var", "param", "ident"):
        return _token_expr(kids[0])
    if rule == "true_lit":
        return A.Bool(True, loc=loc)
    if rule == "false_lit":
        return A.Bool(False, loc=loc)
    if rule == "param_count":
        return A.ParamCount(loc=loc)
    if rule == "map_scalar":
        return A.MapRef(str(kids[0]), None, loc=_tok_loc(kids[0]))
    if rule == "map_keyed":
        return A.MapRef(str(kids[0]), kids[1], loc=loc)
    if rule == "expr_list" or rule == "call_args":
        return [expr_of(k) for k in kids if k is not None]
    if rule == "call":
        return A.Call(str(kids[0]), kids[1], name_loc=_tok_loc(kids[0]), loc=loc)
    if rule == "ternary":
        return A.Ternary(expr_of(kids[0]), expr_of(kids[1]), expr_of(kids[2]), loc=loc)
    if rule == "elvis":
        return A.Elvis(expr_of(kids[0]), expr_of(kids[1]), loc=loc)
    if rule in ("field", "arrow"):
        obj = expr_of(kids[0])
        return A.Field(obj, str(kids[1]), rule == "arrow", loc=loc)
    if rule == "index":
        return A.Index(expr_of(kids[0]), expr_of(kids[1]), loc=loc)
    if rule in ("postinc", "postdec", "preinc", "predec"):
        op = "++" if rule.endswith("inc") else "--"
        return A.IncDec(op, expr_of(kids[0]), rule.startswith("pre"), loc=loc)
    if rule == "cast":
        t = _parse_cast_text(str(kids[0]), _tok_loc(kids[0]))
        return A.Cast(t, expr_of(kids[1]), loc=loc)
    if rule == "tuple":
        return A.Tuple([expr_of(k) for k in kids if k is not None], loc=loc)
    if rule == "record_field":
        return (str(kids[0]), expr_of(kids[1]))
    if rule == "record":
        return A.Record(list(kids), loc=loc)
    if rule == "sizeof_type":
        return A.SizeOf(_parse_cast_text(str(kids[0]), _tok_loc(kids[0])), None, loc=loc)
    if rule == "sizeof_expr":
        return A.SizeOf(None, expr_of(kids[0]), loc=loc)
    if rule.startswith("type_"):
        kind = rule[5:]
        name = str(kids[0])
        array = None
        stars = 0
        for k in kids[1:]:
            if k is None:
                continue
            if k.type == "INT":
                array = parse_int(str(k))
            elif k.type == "STARS":
                stars = len(str(k))
        return A.TypeName(kind, name, stars, array, loc=loc)
    # statements
    if rule == "lv_var":
        return _token_expr(kids[0])
    if rule == "lv_ident":
        return A.Ident(str(kids[0]), loc=_tok_loc(kids[0]))
    if rule == "assign":
        return A.Assign(kids[0], expr_of(kids[1]), loc=loc)
    if rule == "compound_assign":
        return A.CompoundAssign(kids[0], str(kids[1])[:-1], expr_of(kids[2]), loc=loc)
    if rule == "let_stmt":
        var = _token_expr(kids[0])
        return A.Let(var, kids[1], kids[2], loc=loc)
    if rule == "return_stmt":
        return A.Return(kids[0], loc=loc)
    if rule == "break_stmt":
        return A.Break(loc=loc)
    if rule == "continue_stmt":
        return A.Continue(loc=loc)
    if rule == "expr_stmt":
        return A.ExprStmt(expr_of(kids[0]), loc=loc)
    if rule in ("block", "body"):
        return A.Block([k for k in kids if k is not None], loc=loc)
    if rule == "if_stmt":
        return A.If(expr_of(kids[0]), kids[1], kids[2], loc=loc)
    if rule == "while_stmt":
        return A.While(expr_of(kids[0]), kids[1], loc=loc)
    if rule == "unroll_stmt":
        return A.Unroll(expr_of(kids[0]), kids[1], loc=loc)
    if rule == "for_stmt":
        var = _token_expr(kids[0])
        it = kids[1]
        if isinstance(it, tuple) and it[0] == "range":
            return A.ForRange(var, it[1], it[2], kids[2], loc=loc)
        return A.ForMap(var, it, kids[2], loc=loc)
    if rule == "iter_map":
        return A.MapRef(str(kids[0]), None, loc=_tok_loc(kids[0]))
    if rule == "iter_range":
        return ("range", expr_of(kids[0]), expr_of(kids[1]))
    # top level
    if rule == "attach_list":
        return [A.AttachPoint(str(k), loc=_tok_loc(k)) for k in kids if k is not None]
    if rule == "predicate":
        return expr_of(kids[0])
    if rule == "probe":
        attach, pred, body = kids
        return A.Probe(attach, pred, body, loc=attach[0].loc.join(body.loc) if attach else loc)
    if rule == "macro_params":
        return [k for k in kids if k is not None]
    if rule in ("mparam_var", "mparam_map", "mparam_ident"):
        return A.MacroParam(rule[7:], str(kids[0]), loc=loc)
    if rule == "macro_def":
        return A.Macro(str(kids[0]), kids[1], kids[2], loc=loc)
    if rule == "map_decl":
        return A.MapDecl(str(kids[0]), str(kids[1]), parse_int(str(kids[2])), loc=loc)
    if rule == "config_item":
        return A.ConfigItem(str(kids[0]), kids[1], loc=loc)
    if rule == "config_items":
        return [k for k in kids if k is not None]
    if rule == "cfg_int":
        return parse_int(str(kids[0]))
    if rule == "cfg_ident":
        return str(kids[0])
    if rule == "cfg_str":
        return parse_string(str(kids[0]))
    if rule == "cfg_true":
        return True
    if rule == "cfg_false":
        return False
    if rule == "config_block":
        return ("config", kids[0])
    if rule == "import_stmt":
        return ("import", A.Str(parse_string(str(kids[0])), loc=loc))
    if rule == "c_preproc":
        return A.CItem("preproc", str(kids[0]), loc=loc)
    if rule == "c_definition":
        return A.CItem("definition", str(kids[0]), loc=loc)
    if rule == "start":
        prog = A.Program(loc=loc)
        for k in kids:
            if k is None:
                continue
            if isinstance(k, Token) and k.type == "SHEBANG":
                prog.shebang = str(k)
            elif isinstance(k, A.CItem):
                prog.c_items.append(k)
            elif isinstance(k, tuple) and k[0] == "config":
                prog.config.extend(k[1])
            elif isinstance(k, tuple) and k[0] == "import":
                prog.imports.append(k[1])
            elif isinstance(k, A.Probe):
                prog.probes.append(k)
            elif isinstance(k, A.Macro):
                prog.macros.append(k)
            elif isinstance(k, A.MapDecl):
                prog.map_decls.append(k)
        return prog
    raise _BuildError(f"internal: unhandled grammar rule {rule}", loc)  # pragma: no cover


def _token_expr(tok: Any) -> A.Expr:
    loc = _tok_loc(tok)
    t = tok.type
    text = str(tok)
    if t == "INT":
        try:
            return A.Int(parse_int(text), text, loc=loc)
        except ValueError as e:
            raise _BuildError(str(e), loc) from None
    if t == "STRING":
        try:
            return A.Str(parse_string(text), loc=loc)
        except ValueError as e:
            raise _BuildError(str(e), loc) from None
    if t == "VAR":
        return A.Var(text, loc=loc)
    if t == "PARAM":
        return A.Param(int(text[1:]), loc=loc)
    if t == "IDENT":
        return A.Ident(text, loc=loc)
    raise _BuildError(f"unexpected {text}", loc)  # pragma: no cover


# --------------------------------------------------------------------------- errors

_TOKEN_NAMES = {
    "$END": "end of file", "SEMICOLON": ";", "LBRACE": "{", "RBRACE": "}", "LPAR": "(",
    "RPAR": ")", "LSQB": "[", "RSQB": "]", "COMMA": ",", "COLON": ":", "EQUAL": "=",
    "SLASH": "/", "ENDPRED": "/", "IDENT": "identifier", "INT": "integer", "STRING": "string",
    "VAR": "variable", "MAP": "map", "PARAM": "positional parameter", "ATTACH": "attach point",
    "CAST": "cast", "DOT": ".", "QMARK": "?", "STAR": "*", "PLUS": "+", "MINUS": "-",
    "COMPOUND_OP": "compound assignment", "C_PREPROC": "preprocessor line",
    "C_DEFINITION": "C definition", "SHEBANG": "shebang",
}


def _describe(tok_type: str, value: str | None = None) -> str:
    if tok_type in _TOKEN_NAMES:
        return _TOKEN_NAMES[tok_type]
    if value:
        return value
    if tok_type.startswith("__ANON") or tok_type.isupper():
        return tok_type.lower()
    return tok_type


def _expected(exp: Any) -> str:
    names = sorted({_describe(e) for e in exp if not str(e).startswith("__ANON")})
    if not names or len(names) > 6:
        return ""
    return ", expecting " + " or ".join(names)


def _syntax_diag(err: Any, source: str) -> Diagnostic:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(err, UnexpectedToken):
        tok = err.token
        if tok.type == "$END":
            line, col = _eof_pos(source)
            return Diagnostic(ERROR, "syntax error, unexpected end of file" + _expected(err.expected),
                              A.Loc(line, col, line, col + 1))
        text = str(tok)
        width = max(1, len(text.split("\n")[0]))
        if tok.type in ("ATTACH",) and getattr(err, "expected", None) and "ATTACH" not in err.expected:
            msg = f"syntax error, unexpected {text}"
        else:
            shown = text if tok.type not in _TOKEN_NAMES or len(text) <= 2 else _describe(tok.type)
            msg = f"syntax error, unexpected {shown}"
        msg += _expected(err.expected)
        return Diagnostic(ERROR, msg, A.Loc(tok.line, tok.column, tok.line, tok.column + width))
    if isinstance(err, UnexpectedCharacters):
        ch = source[err.pos_in_stream] if err.pos_in_stream < len(source) else ""
        line, col = err.line, err.column
        if ch == '"':
            return Diagnostic(ERROR, "unterminated string", A.Loc(line, col, line, col + 1))
        shown = repr(ch)[1:-1] if ch else "character"
        return Diagnostic(ERROR, f"syntax error, unexpected character '{shown}'",
                          A.Loc(line, col, line, col + 1))
    if isinstance(err, UnexpectedEOF):
        line, col = _eof_pos(source)
        return Diagnostic(ERROR, "syntax error, unexpected end of file", A.Loc(line, col, line, col + 1))
    return Diagnostic(ERROR, f"syntax error: {err}")  # pragma: no cover


def _eof_pos(source: str) -> tuple[int, int]:
    lines = source.split("\n")
    # point at the last non-empty line's end
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip():
            return i + 1, len(lines[i]) + 1
    return 1, 1


def _nesting_depth(source: str) -> int:
    depth = best = 0
    for ch in source:
        if ch in "({[":
            depth += 1
            best = max(best, depth)
        elif ch in ")}]":
            depth = max(0, depth - 1)
    return best


def parse(source: str, filename: str = "stdin") -> A.Program:
    """Parse a program; raise :class:`ProbeCompileError` on any syntax error."""
    from lark.exceptions import LarkError, UnexpectedInput

    if len(source) > MAX_SOURCE_BYTES:
        raise ProbeCompileError([Diagnostic(ERROR, f"program too large ({len(source)} bytes, "
                                                   f"limit {MAX_SOURCE_BYTES})")], source, filename)
    if "\0" in source:
        pos = source.index("\0")
        line = source.count("\n", 0, pos) + 1
        col = pos - (source.rfind("\n", 0, pos) + 1) + 1
        raise ProbeCompileError([Diagnostic(ERROR, "syntax error, unexpected NUL character",
                                            A.Loc(line, col, line, col + 1))], source, filename)
    if _nesting_depth(source) > MAX_NESTING:
        raise ProbeCompileError([Diagnostic(ERROR, f"program nested too deeply (more than "
                                                   f"{MAX_NESTING} levels of brackets)")],
                                source, filename)
    try:
        tree = get_parser().parse(source)
    except UnexpectedInput as e:
        raise ProbeCompileError([_syntax_diag(e, source)], source, filename) from None
    except (LarkError, RecursionError) as e:  # pragma: no cover - defensive
        raise ProbeCompileError([Diagnostic(ERROR, f"syntax error: {type(e).__name__}")],
                                source, filename) from None
    try:
        return _to_ast(tree)
    except _BuildError as e:
        raise ProbeCompileError([Diagnostic(ERROR, e.msg, e.loc)], source, filename) from None


def is_incomplete(source: str) -> bool:
    """True when the text is a valid prefix: more input (a ``}``, a closing quote) may fix it."""
    from lark.exceptions import (
        UnexpectedCharacters,
        UnexpectedEOF,
        UnexpectedInput,
        UnexpectedToken,
    )

    try:
        get_parser().parse(source)
    except UnexpectedEOF:
        return True
    except UnexpectedToken as e:
        return e.token.type == "$END"
    except UnexpectedCharacters as e:
        rest = source[e.pos_in_stream:]
        return (rest.startswith('"') and "\n" not in rest) or (rest.startswith("/*") and "*/" not in rest)
    except UnexpectedInput:  # pragma: no cover
        return False
    except Exception:  # pragma: no cover
        return False
    return False
